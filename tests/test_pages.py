"""Pages whatever their bytes: charsets, header and status lines nobody sends, bodies that break
filters. The target fails alone with a reason, or is stored; the run's other targets are always
stored. Examples first, then properties (hypothesis) over random bytes, charsets and headers,
through the real fetch, filters and storage on the real PostgreSQL."""

import codecs

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core import db as shared_db
from shared.scrape import fetch
from shared.scrape.job import ScrapeJob
from tests import runs
from tests.loopback import RawSite, answer

HEALTHY = [f"healthy-{i}" for i in range(3)]


def run_with_neighbours(site: RawSite, hostile: bytes, **job_keys) -> tuple[list, dict]:
    site.answers["hostile"] = hostile
    for name in HEALTHY:
        site.answers[name] = answer(f"<p>{name}</p>".encode(), headers=[b"Content-Type: text/html; charset=utf-8"])
    jobs = [ScrapeJob("hostile", site.url("hostile"), timeout=5, **job_keys)] + \
           [ScrapeJob(name, site.url(name), timeout=60) for name in HEALTHY]  # generous: a loaded machine is slow
    results = runs.scrape(jobs, concurrency=4)
    return results, {r.name: r for r in results}


# --- examples --------------------------------------------------------------------------------

@pytest.mark.parametrize("label, body", [
    ("utf-7", "+AGEAYgBj- caf\u00e9".encode("utf-7")),  # never honoured: decoded as UTF-8/1252
    ("utf-16", "<p>caf\u00e9</p>".encode("utf-16-le")),
    ("x-user-defined", bytes(range(256))),
    ("iso-2022-kr", b"\x1b$)C hello"),  # a "replacement" label: one U+FFFD, as browsers show
    ("no-such-charset", b"\x00\xff\xfe\xd8\x00"),
    ("utf-8", b"caf\xc3\xa9 \xff ok\x00"),
])
def test_a_hostile_charset_fails_or_stores_alone(database_url, db, raw_site, label, body):
    hostile = answer(body, headers=[b"Content-Type: text/html; charset=" + label.encode()])
    results, by_name = run_with_neighbours(raw_site, hostile)
    assert all(by_name[name].outcome == "new" for name in HEALTHY)
    assert by_name["hostile"].outcome == "new"  # every body decodes to something storable
    stored = db.run("SELECT body FROM scraps WHERE target = 'hostile'")[0][0]
    assert "\x00" not in stored


def test_a_utf8_page_with_one_stray_byte_stays_utf8():
    assert fetch.decode("Zürich – café".encode() + b"\xff", "text/html") == "Zürich – café\ufffd"
    assert fetch.decode("café".encode("cp1252"), "text/html") == "café"  # undeclared 1252 stays 1252
    assert fetch.decode(codecs.BOM_UTF16_LE + "é".encode("utf-16-le"), "text/html; charset=latin1") == "é"
    assert fetch.decode(b'<meta charset="utf-16"><p>\xc3\xa9', "") == '<meta charset="utf-16"><p>é'
    assert fetch.decode(b"+AGEAYgBj-", "text/html; charset=utf-7") == "+AGEAYgBj-"


def test_headers_and_status_lines_nobody_sends(database_url, db, raw_site):
    cases = {
        "nul-etag": answer(b"<p>a</p>", headers=[b"ETag: \"a\x00b\"", b"Last-Modified: \xff\xfe"]),
        "no-status-text": b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
        "http09": b"<p>no status line at all</p>",
        "huge-header": answer(b"x", headers=[b"X-Big: " + b"a" * 200_000]),
        "lying-length": b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\nConnection: close\r\n\r\nshort",
        "status-999": answer(b"x", status=b"999 Whatever"),
    }
    for path, raw in cases.items():
        raw_site.answers[path] = raw
    for name in HEALTHY:
        raw_site.answers[name] = answer(f"<p>{name}</p>".encode())
    jobs = [ScrapeJob(p, raw_site.url(p), timeout=5) for p in cases] + [ScrapeJob(n, raw_site.url(n)) for n in HEALTHY]
    by_name = {r.name: r for r in runs.scrape(jobs)}
    assert all(by_name[name].outcome == "new" for name in HEALTHY)
    for path in cases:
        assert by_name[path].outcome in ("new", "error") and (by_name[path].outcome == "new" or by_name[path].reason)
    stored_etag = db.run("SELECT etag FROM scrape_targets WHERE name = 'nul-etag'")[0][0]
    assert stored_etag is None or "\x00" not in stored_etag


def test_two_ad_hoc_urls_differing_only_in_their_query_are_two_targets(database_url, db, raw_site, capsys):
    from functions import scrape as scrape_fn

    raw_site.answers["p?a=1"] = answer(b"<p>one</p>")
    raw_site.answers["p?a=2"] = answer(b"<p>two</p>")
    assert scrape_fn.main(["--url", raw_site.url("p?a=1")]) == 0
    assert scrape_fn.main(["--url", raw_site.url("p?a=2")]) == 0
    assert [line.split(":")[1].strip() for line in capsys.readouterr().out.splitlines()] == ["new", "new"]
    assert db.run("SELECT count(*) FROM scrape_targets")[0][0] == 2


# --- properties --------------------------------------------------------------------------------

LABELS = ["utf-8", "UTF-8", "utf-16", "utf-16be", "utf-7", "latin1", "iso-8859-1", "windows-1252", "shift_jis",
          "euc-jp", "gb18030", "big5", "koi8-r", "x-user-defined", "iso-2022-kr", "replacement", "bogus", "",
          "utf-8\x00", "\u00e9", "csUnicode11UTF7"]
bodies = st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda text, codec: text.encode(codec, errors="replace"),
              st.text(max_size=500), st.sampled_from(["utf-8", "utf-16", "utf-16-be", "cp1252", "shift_jis", "utf-7"])),
    st.builds(lambda text, label: f'<html><head><meta charset="{label}"></head><body>{text}</body>'.encode(
        "utf-8", errors="surrogatepass"), st.text(max_size=300), st.sampled_from(LABELS)),
)
header_text = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@given(raw=bodies, label=st.sampled_from(LABELS) | st.text(max_size=20))
@settings(max_examples=300, deadline=None)
def test_any_body_with_any_charset_decodes_to_storable_text(raw, label):
    text = fetch.decode(raw, f"text/html; charset={label}")
    assert isinstance(text, str) and shared_db.storable(text) == text


@given(raw_body=bodies, label=st.sampled_from(LABELS), etag=header_text, status=st.sampled_from(
    [b"200 OK", b"200", b"203 Non-Authoritative", b"206 Partial", b"304 Not Modified", b"404 Not Found", b"500 Oops",
     b"999 Odd", b"200 \xff\xfe"]), extra=st.lists(header_text, max_size=3), select=st.booleans())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_hostile_page_never_costs_its_neighbours_their_check(database_url, raw_site, raw_body, label, etag,
                                                              status, extra, select):
    headers = [b"Content-Type: text/html; charset=" + label.encode("utf-8", "surrogatepass"),
               b"ETag: " + etag, *(b"X-" + h for h in extra)]
    results, by_name = run_with_neighbours(raw_site, answer(raw_body, status, headers),
                                           **({"select": ("body",)} if select else {}))
    assert [r.name for r in results] == ["hostile", *HEALTHY]
    assert all(by_name[name].outcome in ("new", "unchanged") for name in HEALTHY), results
    hostile = by_name["hostile"]
    assert hostile.outcome in ("new", "unchanged", "changed") or (hostile.outcome == "error" and hostile.reason)
    assert not hostile.reason or not hostile.reason.startswith("storage failed")


def test_pathological_filters_end_as_their_own_errors_within_the_job_timeout(database_url, db, raw_site):
    """A catastrophic regular expression (hours of backtracking) and a deeply nested page
    (a minute of selecting) each end as their target's error when its timeout is up, and the
    healthy targets beside them are stored."""
    import time

    raw_site.answers["regex"] = answer(b"<p>" + b"a" * 40 + b"b</p>")
    raw_site.answers["nested"] = answer(b"<div>" * 10000 + b"x" + b"</div>" * 10000)
    for name in HEALTHY:
        raw_site.answers[name] = answer(f"<p>{name}</p>".encode())
    jobs = [ScrapeJob("regex", raw_site.url("regex"), timeout=2, ignore=("(a+)+$",)),
            ScrapeJob("nested", raw_site.url("nested"), timeout=2, select=("div",))] + \
           [ScrapeJob(name, raw_site.url(name), timeout=60, select=("p",)) for name in HEALTHY]
    started = time.monotonic()
    by_name = {r.name: r for r in runs.scrape(jobs)}
    assert time.monotonic() - started < 60  # generous; without the sandbox it never ends
    for name in ("regex", "nested"):
        assert by_name[name].outcome == "error" and "filters took longer than 2 s" in by_name[name].reason
    assert all(by_name[name].outcome == "new" for name in HEALTHY)
    assert {row[0] for row in db.run("SELECT target FROM scraps")} == set(HEALTHY)


@pytest.mark.parametrize("hostile", [
    # Headers malformed enough that the client never sees "Connection: close".
    b"HTTP/1.1 200 OK\r\nX-\x8c\x00bad\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    # A 304 with a body: bytes left on the connection.
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 30\r\n\r\nHTTP/1.1 200 OK\r\n\r\nevil",
    # An error whose body is never read.
    b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\n0123456789",
])
def test_a_hostile_answer_never_garbles_a_neighbour_on_the_same_connection(database_url, raw_site, hostile):
    """One parallel fetch per host, so the healthy pages would reuse the hostile answer's
    connection, which the server keeps open and answers with garbage from then on."""
    raw_site.answers["hostile"] = hostile
    raw_site.keep_open.add("hostile")
    for name in HEALTHY:
        raw_site.answers[name] = answer(f"<p>{name}</p>".encode())
    jobs = [ScrapeJob("hostile", raw_site.url("hostile"), timeout=5)] + \
           [ScrapeJob(name, raw_site.url(name), timeout=30) for name in HEALTHY]
    by_name = {r.name: r for r in runs.scrape(jobs, concurrency=1, per_host=1)}
    assert [by_name[name].outcome for name in HEALTHY] == ["new"] * len(HEALTHY), by_name
