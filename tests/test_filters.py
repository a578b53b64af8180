"""Noise filters: pages with a fresh token and timestamp on every request, checked for real."""

import json
import secrets
from datetime import datetime, timezone

import pytest
from werkzeug import Response

from functions import scrape as scrape_fn
from shared.app import config
from shared.scrape import filters

NOISY_PAGE = """<!doctype html>
<html><head><title>Council</title><meta name="csrf-token" content="{token}">
<script>window.csrf = "{token}"; window.renderedAt = {stamp};</script></head>
<body>
  <form><input type="hidden" name="csrf" value="{token}"><button>Search</button></form>
  <div id="agenda">
    <h1>Agenda   for {day}</h1>
    <p>Item 1: <b>budget</b></p>
    <p>{item2}</p>
  </div>
  <footer>Page generated at {now} in {ms} ms. Session {token}</footer>
</body></html>
"""


@pytest.fixture
def noisy_page(httpserver):
    """A page whose HTML differs on every request (token, time), while its agenda changes only on demand."""
    state = {"item2": "Item 2: parks", "requests": 0}

    def respond(request):
        state["requests"] += 1
        now = datetime.now(timezone.utc)
        html = NOISY_PAGE.format(token=secrets.token_hex(16), stamp=now.timestamp(), now=now.isoformat(),
                                 ms=state["requests"] % 97, day="Monday", item2=state["item2"])
        return Response(html, content_type="text/html; charset=utf-8")

    httpserver.expect_request("/agenda").respond_with_handler(respond)
    state["url"] = httpserver.url_for("/agenda")
    return state


def write_jobs(tmp_path, monkeypatch, text):
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    monkeypatch.setenv("JOBS_FILE", str(path))


def run_cli(capsys, *args):
    code = scrape_fn.main(list(args))
    return code, capsys.readouterr().out


def job(**keys):
    return config.build(config.Entry("scrape", "j", {"name": "j", "url": "http://127.0.0.1/", **keys}, "test"))


def test_unfiltered_noisy_page_changes_on_every_check(database_url, db, noisy_page, tmp_path, monkeypatch, capsys):
    """The seed's Discussion, reproduced: without filters every check is a new content row."""
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "raw"\nurl = "{noisy_page["url"]}"\n')
    outcomes = [run_cli(capsys)[1] for _ in range(5)]
    assert outcomes == ["raw: new\n"] + ["raw: changed\n"] * 4
    assert db.run("SELECT count(*) FROM scraps")[0][0] == 5


def test_filtered_noisy_page_stays_one_row_until_a_real_change(database_url, db, noisy_page, tmp_path,
                                                                monkeypatch, capsys):
    write_jobs(tmp_path, monkeypatch, f"""
[[scrape]]
name = "agenda"
url = "{noisy_page["url"]}"
ignore = ['Page generated at \\S+ in \\d+ ms\\.', 'Session [0-9a-f]+']

[[scrape]]
name = "agenda-only"
url = "{noisy_page["url"]}"
select = ["#agenda"]
""")
    first = run_cli(capsys)
    assert first == (0, "agenda: new\nagenda-only: new\n")
    for _ in range(25):
        assert run_cli(capsys) == (0, "agenda: unchanged\nagenda-only: unchanged\n")
    assert noisy_page["requests"] == 52  # every check really fetched a fresh, different page
    rows = db.run("SELECT target, body, cardinality(seen_at) FROM scraps ORDER BY target")
    assert rows == [
        ["agenda", "Search\nAgenda for Monday\nItem 1: budget\nItem 2: parks", 26],
        ["agenda-only", "Agenda for Monday\nItem 1: budget\nItem 2: parks", 26],
    ]

    noisy_page["item2"] = "Item 2: parks and <i>libraries</i>"
    assert run_cli(capsys) == (0, "agenda: changed\nagenda-only: changed\n")
    assert run_cli(capsys) == (0, "agenda: unchanged\nagenda-only: unchanged\n")
    assert db.run("SELECT count(*) FROM scraps WHERE target = 'agenda'")[0][0] == 2
    assert db.run("SELECT body FROM scraps WHERE target = 'agenda-only' ORDER BY id DESC LIMIT 1")[0][0] \
        == "Agenda for Monday\nItem 1: budget\nItem 2: parks and libraries"


def test_selector_matching_nothing_is_a_failed_check(database_url, db, noisy_page, tmp_path, monkeypatch, capsys):
    write_jobs(tmp_path, monkeypatch, f"""
[[scrape]]
name = "gone"
url = "{noisy_page["url"]}"
select = ["#agenda", "#minutes"]
""")
    code, out = run_cli(capsys)
    assert (code, out) == (1, "gone: error: selector '#minutes' matched nothing\n")
    assert db.run("SELECT count(*) FROM scrape_contents")[0][0] == 0
    assert db.run("SELECT error_streak, last_error, last_content_id FROM scrape_targets") == \
        [[1, "selector '#minutes' matched nothing", None]]


def test_text_is_whitespace_insensitive_by_default():
    page_a = "<div><p>One   two</p>\n\n<p>three</p></div>"
    page_b = "<div>\n  <p>One two </p><p>\n three</p>\n</div>"
    assert filters.apply(job(select="div"), page_a) == filters.apply(job(select="div"), page_b) == "One two\nthree"
    kept = job(select="div", whitespace="keep")
    assert filters.apply(kept, page_a) != filters.apply(kept, page_b)


def test_drop_select_text_and_markup():
    page = "<body><nav>Menu</nav><main><p>Hi <a href='/x'>there</a></p><aside class=ad>Buy</aside></main></body>"
    assert filters.apply(job(drop=["nav", ".ad"]), page) == "Hi there"
    assert filters.apply(job(select="main", drop=".ad", text=False), page) == \
        '<main><p>Hi <a href="/x">there</a></p></main>'
    assert filters.apply(job(text=True), page) == "Menu\nHi there\nBuy"
    # A job without filter keys stores the page as fetched.
    assert filters.apply(job(), page) == page


def test_deeply_nested_page_does_not_overflow():
    page = "<div>" * 5000 + "deep" + "</div>" * 5000
    assert filters.apply(job(text=True), page) == "deep"


def test_fingerprint_follows_the_filter_settings():
    assert filters.fingerprint(job()) == filters.fingerprint(job(whitespace="keep"))  # no filters either way
    assert filters.fingerprint(job(select="#a")) != filters.fingerprint(job(select="#b"))
    assert filters.fingerprint(job(select="#a")) == filters.fingerprint(job(select=["#a"]))


def tomli_w(table: dict) -> str:
    """One [[scrape]] table as TOML (values are strings, numbers, booleans or lists of them)."""
    return "[[scrape]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


@pytest.mark.parametrize("keys, message", [
    ({"selects": ["#a"]}, "job 'j': unknown key 'selects'"),
    ({"select": "p["}, "job 'j': selector 'p[' is not valid CSS"),
    ({"drop": [1]}, "job 'j': key 'drop' must be a string or a list of non-empty strings"),
    ({"ignore": "(unclosed"}, "job 'j': key 'ignore': '(unclosed' is not a valid regular expression"),
    ({"ignore": "a{4294967296}"}, "job 'j': key 'ignore': 'a{4294967296}' is too large to compile"),
    ({"whitespace": "squash"}, "job 'j': key 'whitespace' must be one of ignore, keep"),
    ({"text": "yes"}, "job 'j': key 'text' must be a bool"),
    ({"notify": "not a url"}, "job 'j': key 'notify' holds an entry that is not an Apprise URL"),
    ({"alert_after": 0}, "job 'j': key 'alert_after' must be between 1 and 10000"),
])
def test_bad_filter_and_notify_keys_name_job_and_key(tmp_path, keys, message):
    table = {"name": "j", "url": "http://127.0.0.1/", **keys}
    (tmp_path / "jobs.toml").write_text(tomli_w(table))
    with pytest.raises(config.ConfigError) as caught:
        [config.build(entry) for entry in config.entries(tmp_path / "jobs.toml")]
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "jobs.toml"))


def test_html_library_is_imported_lazily():
    """Cold starts: importing the driver must not load the HTML parser or Apprise."""
    import subprocess
    import sys

    code = "import sys, functions.scrape, shared.scrape.filters, shared.notify.messages; " \
           "print([m for m in ('selectolax', 'apprise') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
