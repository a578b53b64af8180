"""Remote text shown in one line (shared/core/text.py) and secrets redacted however they are split
(shared/core/log.py): properties over random text, then a server's status line through the
scrape result line, `history show` and the text report, and a CARTO answer folding its key."""

import re
import string
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions import history as history_fn
from functions import report as report_fn
from functions import scrape as scrape_fn
from shared.core import log
from shared.core.text import one_line, plural
from tests.carto_fixtures import KEY, v2_job
from tests.loopback import RawSite, answer

CONTROL = "".join(map(chr, range(32))) + "\x7f\x85\x9b\u2028\u2029\u202e\u2066"
GAPS = " \t\r\n\x0b\x0c\x1b\x00\x85\u2028\u2029\u200b\xad"


@given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(CONTROL), max_size=300),
       st.integers(min_value=2, max_value=400))
def test_one_line_never_holds_a_control_character_or_a_break_and_is_bounded(text, limit):
    line = one_line(text, limit)
    assert not any(c in CONTROL or "\ud800" <= c <= "\udfff" for c in line)
    assert len(line) <= limit and line == line.strip()


@given(st.text(alphabet=string.ascii_letters + string.digits + string.punctuation, max_size=200).map(
    lambda s: " ".join(s.split())))
def test_one_line_leaves_plain_printable_text_as_it_is(text):
    assert one_line(text, None) == text


def test_escape_sequences_and_line_breaks_become_spaces():
    assert one_line("HTTP 200 \x1b]0;owned\x07OK\r\x1b[2Jx\x0by\x85z\u2028w") == "HTTP 200 ]0;owned OK [2Jx y z w"


def test_plurals_read_right():
    assert [plural(n, "run") for n in (0, 1, 2, 1234)] == ["0 runs", "1 run", "2 runs", "1,234 runs"]
    assert plural(1, "history", "histories") == "1 history" and plural(3, "history", "histories") == "3 histories"


# --- redaction that holds under reformatting ------------------------------------------------

@contextmanager
def only_secrets(*values):
    """The registry holding just `values` for the block (other tests register their own)."""
    saved = set(log._secrets)
    log._secrets.clear()
    log._sorted = None
    try:
        for value in values:
            log.add_secret(value)
        yield
    finally:
        log._secrets.clear()
        log._secrets.update(saved)
        log._sorted = None


secrets = st.text(alphabet=string.ascii_letters + string.digits + "-_.~+/=", min_size=8, max_size=40)
noise = st.text(alphabet=st.characters(codec="utf-8", exclude_characters=GAPS), max_size=40)


@settings(max_examples=300, deadline=None)
@given(secret=secrets, before=noise, after=noise, cuts=st.lists(st.integers(min_value=1, max_value=39), max_size=6),
       gaps=st.lists(st.text(alphabet=GAPS, min_size=1, max_size=3), min_size=6, max_size=6))
def test_a_secret_split_folded_or_interleaved_with_gaps_is_redacted_whole(secret, before, after, cuts, gaps):
    pieces, last = [], 0
    for cut in sorted({c for c in cuts if c < len(secret)}):
        pieces.append(secret[last:cut])
        last = cut
    pieces.append(secret[last:])
    split = "".join(piece + (gaps[i] if i < len(pieces) - 1 else "") for i, piece in enumerate(pieces))
    with only_secrets(secret):
        shown = log.redact(before + " " + split + " " + after)
    squeezed = re.sub("[" + re.escape(GAPS) + "]", "", shown)
    assert secret not in squeezed, (secret, split, shown)
    assert "***" in shown


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.ascii_lowercase + " \n", max_size=200))
def test_text_without_a_secret_is_unchanged(text):
    with only_secrets("Zz9!Qq8@Ww7#"):  # characters the text never holds
        assert log.redact(text) == text


# --- through the commands -----------------------------------------------------------------

HOSTILE_REASON = b"Moved \x1b]0;owned\x07\x1b[2J\r\x0bsecond\x85line\x0cend"  # as latin-1: NEL is \x85


def test_a_status_line_full_of_terminal_controls_is_one_visible_line_everywhere(database_url, jobs_file, capsys):
    site = RawSite()
    try:
        site.answers["page"] = answer(b"", status=b"500 " + HOSTILE_REASON)
        jobs_file(f'[[scrape]]\nname = "p"\nurl = "{site.url("page")}"\n')
        assert scrape_fn.main([]) == 1
        printed = capsys.readouterr().out
        assert history_fn.main(["show", "p"]) == 0
        shown = capsys.readouterr().out
        assert report_fn.main([]) == 0
        reported = capsys.readouterr().out
    finally:
        site.close()
    assert printed.count("\n") == 1 and printed.startswith("p: error: HTTP 500 Moved ]0;owned [2J second")
    for text in (printed, shown, reported):
        assert not any(c in CONTROL for c in text.replace("\n", "")), repr(text)
    assert any(line.startswith("failing: 1 failed check in a row") and "]0;owned [2J second line end" in line
               for line in shown.splitlines()), shown


@pytest.mark.parametrize("fold", ["\n", "\r\n ", " ", "\x1b[0m", "\u2028"])
def test_a_carto_answer_folding_the_key_never_shows_it(httpserver, fold):
    from shared.refresh import carto
    import time

    from tests.carto_fixtures import FAST

    log.add_secret(KEY)
    folded = fold.join(KEY[i:i + 7] for i in range(0, len(KEY), 7))
    httpserver.expect_request("/api/v2/sql").respond_with_json({"error": [f"invalid api_key {folded} for user"]},
                                                               status=401)
    with pytest.raises(carto.CartoError) as raised:
        carto.refresh(v2_job(httpserver.url_for("/api/v2/sql")), time.monotonic() + 10, timing=FAST)
    reason = raised.value.reason
    assert KEY[:7] not in reason and KEY[-7:] not in reason and "***" in reason, reason
