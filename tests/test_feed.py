"""The Atom feed of changes (`python -m functions.report --feed`): real scrape runs against loopback
pages and real PostgreSQL, then the feed parsed and checked against what RFC 4287 requires."""

import html
import re
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug import Response

from functions import report as report_fn
from shared.app import schema
from shared.app.report import feed
from shared.core import log
from shared.notify import messages
from shared.scrape import store
from shared.scrape.job import ScrapeJob
from tests import runs

A = "{http://www.w3.org/2005/Atom}"
UTC = timezone.utc
DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def one(parent: ET.Element, tag: str) -> ET.Element:
    found = parent.findall(A + tag)
    assert len(found) == 1, f"{parent.tag} has {len(found)} {tag}"
    return found[0]


def date(element: ET.Element) -> datetime:
    assert DATE.fullmatch(element.text), element.text  # RFC 3339, upper-case T and Z
    return datetime.fromisoformat(element.text)


def iri(text: str) -> str:
    if text.startswith("urn:uuid:"):
        uuid.UUID(text[len("urn:uuid:"):])
    else:
        assert urlsplit(text).scheme in ("http", "https") and not re.search(r"[\s<>\"{}|\\^`]", text), text
    return text


def atom(data: bytes) -> ET.Element:
    """The feed parsed (well-formed XML 1.0), having checked what RFC 4287 requires of it: feed
    id, title, updated; authors in the feed or in every entry; per entry id, title, updated, and
    content or an alternate link; unique entry ids, URIs and RFC 3339 dates; newest first."""
    assert data.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    root = ET.fromstring(data)
    assert root.tag == A + "feed"
    iri(one(root, "id").text)
    assert one(root, "title").text
    date(one(root, "updated"))
    authors = root.findall(A + "author")
    for author in authors:
        assert one(author, "name").text
    entries = root.findall(A + "entry")
    for entry in entries:
        iri(one(entry, "id").text)
        assert one(entry, "title").text
        date(one(entry, "updated"))
        assert authors or entry.findall(A + "author")
        contents = entry.findall(A + "content")
        assert len(contents) <= 1
        alternates = [link for link in entry.findall(A + "link") if link.get("rel", "alternate") == "alternate"]
        assert len(alternates) <= 1 and (contents or alternates)
        for link in entry.findall(A + "link"):
            iri(link.get("href"))
        for content in contents:
            assert content.get("type") in ("text", "html", "xhtml")
    for link in root.findall(A + "link"):
        iri(link.get("href"))
    ids = [one(entry, "id").text for entry in entries]
    assert len(set(ids)) == len(ids)
    times = [date(one(entry, "updated")) for entry in entries]
    assert times == sorted(times, reverse=True)
    return root


def entries(root: ET.Element) -> list[dict]:
    return [{"id": one(e, "id").text, "title": one(e, "title").text, "updated": date(one(e, "updated")),
             "link": e.find(A + "link").get("href") if e.find(A + "link") is not None else None,
             "content": one(e, "content").text} for e in root.findall(A + "entry")]


@pytest.fixture
def pages(httpserver):
    """Loopback pages whose bodies the test sets: pages.set(path, body) -> the page's URL."""
    bodies = {}

    def answer(request):
        return Response(bodies[request.path], content_type="text/html; charset=utf-8")

    class Pages:
        def set(self, path: str, body) -> str:
            if path not in bodies:
                httpserver.expect_request(path).respond_with_handler(answer)
            bodies[path] = body
            return httpserver.url_for(path)

    return Pages()


def scrape(*jobs):
    results = runs.scrape(list(jobs), concurrency=2)
    assert all(r.outcome in ("new", "changed", "unchanged") for r in results), results


def agenda(*items: str) -> str:
    return "<html><body><ul>\n" + "".join(f"<li>{item}</li>\n" for item in items) + "</ul></body></html>"


def test_each_change_is_an_entry_newest_first_with_its_escaped_diff(database_url, db, pages, tmp_path, capsys):
    url = pages.set("/agenda", agenda("Item 1: budget", "Item 2: parks"))
    minutes_url = pages.set("/minutes", "minutes v1")
    jobs = [ScrapeJob("agenda", url), ScrapeJob("minutes", minutes_url)]
    scrape(*jobs)  # the first check of each: no change
    pages.set("/agenda", agenda("Item 1: budget", "Item 2: parks", "Item 3: <b>roads</b> & bridges"))
    scrape(*jobs)
    pages.set("/minutes", "minutes v2")
    scrape(*jobs)
    pages.set("/agenda", agenda("Item 1: new budget", "Item 2: parks", "Item 3: <b>roads</b> & bridges"))
    scrape(*jobs)
    scrape(*jobs)  # unchanged

    path = tmp_path / "changes.xml"
    assert report_fn.main(["--feed", str(path)]) == 0
    assert capsys.readouterr().out.endswith(f"Atom feed written to {path}\n")
    root = atom(path.read_bytes())
    found = entries(root)
    assert [e["title"] for e in found] == ["agenda changed", "minutes changed", "agenda changed"]
    assert [e["link"] for e in found] == [url, minutes_url, url]
    assert one(root, "updated").text == one(root.find(A + "entry"), "updated").text
    assert root.find(A + "link") is None  # no self link without --feed-url
    # The content is HTML: the diff in <pre>, escaped; the page's own markup is text in it.
    newest, _, oldest = (e["content"] for e in found)
    assert html.escape("-<li>Item 1: budget</li>\n+<li>Item 1: new budget</li>") in newest
    assert html.escape("+<li>Item 3: <b>roads</b> & bridges</li>") in oldest
    assert "<b>roads</b>" not in oldest
    assert f'<a href="{url}">{url}</a>' in oldest
    assert html.escape(messages.unified_diff(agenda("Item 1: budget", "Item 2: parks"),
                                             agenda("Item 1: budget", "Item 2: parks",
                                                    "Item 3: <b>roads</b> & bridges"))) in oldest

    # Run again after another change: the entries already seen keep their ids.
    pages.set("/minutes", "minutes v3")
    scrape(*jobs)
    assert report_fn.main(["--feed", str(path)]) == 0
    again = entries(atom(path.read_bytes()))
    assert [e["id"] for e in again[1:]] == [e["id"] for e in found]
    assert again[0]["title"] == "minutes changed"
    # The text report still comes on stdout.
    assert "agenda" in capsys.readouterr().out


def test_feed_alone_on_stdout_with_its_self_link(database_url, db, pages, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no jobs file: `--feed -` needs none
    url = pages.set("/p", "one")
    scrape(ScrapeJob("p", url))
    pages.set("/p", "two")
    scrape(ScrapeJob("p", url))
    feed_url = "https://feeds.example.org/changes.xml?key=a&b=1"
    assert report_fn.main(["--feed", "-", "--feed-url", feed_url, "--days", "1"]) == 0
    out = capsys.readouterr().out
    root = atom(out.encode())
    [self_link] = root.findall(A + "link")
    assert (self_link.get("rel"), self_link.get("href"), self_link.get("type")) == ("self", feed_url,
                                                                                   "application/atom+xml")
    assert [e["title"] for e in entries(root)] == ["p changed"]
    assert "-one\n+two" in entries(root)[0]["content"]


@pytest.mark.parametrize("argv, message", [
    (["--feed", ""], "--feed needs a file name, or - for it alone on stdout"),
    (["--feed", "-", "--html", "-"], "--html - and --feed - cannot both have stdout: write one of them to a file"),
    (["--feed-url", "https://example.org/f.xml"], "--feed-url goes with --feed"),
    (["--feed", "-", "--feed-url", "ftp://example.org/f.xml"], "--feed-url must be the feed's public http(s) URL"),
    (["--feed", "-", "--feed-url", "https://example.org/a b"], "--feed-url must be the feed's public http(s) URL"),
    (["--feed", "-", "--feed-url", "https://example.org/\u00e9"], "--feed-url must be the feed's public http(s) URL"),
])
def test_bad_feed_options_are_one_line_and_exit_2(argv, message, capsys):
    assert report_fn.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err


def test_a_feed_file_in_no_folder_is_refused_before_connecting(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    path = tmp_path / "nowhere" / "changes.xml"
    assert report_fn.main(["--feed", str(path)]) == 2
    assert capsys.readouterr().err == f"error: --feed {path}: no folder {path.parent}\n"


def test_an_edit_of_the_filters_is_not_a_change(database_url, db, pages, capsys):
    url = pages.set("/agenda", agenda("Item 1: budget", "Item 2: parks"))
    scrape(ScrapeJob("agenda", url, select=("ul",)))
    edited = ScrapeJob("agenda", url, select=("li",), ignore=(r"Item \d: ",))
    scrape(edited)  # a new content, stored as a change, but the page did not change
    assert feed.build(db, 1).count(b"<entry>") == 0
    pages.set("/agenda", agenda("Item 1: budget", "Item 2: parks", "Item 3: roads"))
    scrape(edited)
    [change] = entries(atom(feed.build(db, 1)))
    assert "+roads" in change["content"] and "budget\n parks\n+roads" in change["content"]
    assert db.run("SELECT count(*) FROM scrape_filter_edits")[0][0] == 1


HOSTILE = (b"<html><body>\x00\x01\x08\x0b\x0c\x1b\x7f\xc2\x85\xef\xbf\xbe ]]> <script>alert(1)</script>"
           b" &amp; &#0; \xed\xa0\x80 \xff <![CDATA[ x ]]> </content></entry><entry>")


def test_a_hostile_page_still_gives_a_valid_escaped_feed(database_url, db, pages):
    url = pages.set("/hostile", b"<html><body>calm</body></html>")
    scrape(ScrapeJob("hostile", url))
    pages.set("/hostile", HOSTILE)
    scrape(ScrapeJob("hostile", url))
    # And from storage: a name and a URL no job would have, bodies with control characters.
    schema.ensure(db)
    moment = datetime.now(UTC) - timedelta(minutes=5)
    for i, body in enumerate(["a\x01\x02", "b\x03]]>\x1f<script>x</script>\ufffe"]):
        store.record_check(db, "bad\x01name<&>\x7f", "javascript:alert('x\x02')", body, moment + timedelta(seconds=i))
    data = feed.build(db, 1)
    assert b"<script" not in data and b"]]>" not in data and b"</content></entry><entry>" not in data
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", data)
    root = atom(data)
    by_title = {e["title"]: e for e in entries(root)}
    assert set(by_title) == {"hostile changed", "badname<&> changed"}
    hostile = by_title["hostile changed"]["content"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile and "<script" not in hostile
    assert "]]&gt;" in hostile and "&lt;/content&gt;&lt;/entry&gt;&lt;entry&gt;" in hostile
    stored = by_title["badname<&> changed"]
    assert stored["link"] is None and "javascript" not in (stored["link"] or "")  # only http(s) pages are linked
    assert "b]]&gt;&lt;script&gt;x&lt;/script&gt;" in stored["content"]


def test_secrets_are_redacted_before_anything_is_cut(database_url, db):
    schema.ensure(db)
    secret = "Zt7-feed-secret-Qw81nX"
    moment = datetime.now(UTC) - timedelta(minutes=5)
    url = f"http://127.0.0.1/p?token={secret}"
    # Stored before the secret was known (a password the run never saw): in the page, in its URL,
    # and in a URL so long that the feed shows it cut, where the cut falls inside the secret.
    long_url = "http://127.0.0.1/q?pad=" + "x" * (feed.URL_CHARS - 40) + "&token=" + secret + "&more=" + "y" * 60
    assert long_url.index(secret) < feed.URL_CHARS < long_url.index(secret) + len(secret)
    for name, where in (("p", url), ("q", long_url)):
        store.record_check(db, name, where, "old\n", moment)
        store.record_check(db, name, where, f"new {secret} page\n", moment + timedelta(days=1))
    log.add_secret(secret)
    data = feed.build(db, 2, now=moment + timedelta(days=1, minutes=1)).decode()
    assert not any(secret[i:i + 6] in data for i in range(len(secret) - 5))
    by_title = {e["title"]: e for e in entries(atom(data.encode()))}
    assert by_title["p changed"]["link"] == "http://127.0.0.1/p?token=***"
    assert "+new *** page" in by_title["p changed"]["content"]
    assert by_title["q changed"]["link"] is None  # too long to link: shown cut, redacted first
    assert "&amp;token=***&amp;more=y…</p>" in by_title["q changed"]["content"]


def test_the_feed_is_bounded_with_many_changes(database_url, db):
    """150 changes whose diffs are all '&' and '<', which escaping makes nine times as long: at
    most MAX_ENTRIES entries, at most MAX_BYTES bytes, the newest kept, the number left out told."""
    schema.ensure(db)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for i in range(150):
        body = "\n".join(f"{i} " + "&<" * 40 for _ in range(200))
        store.record_check(db, f"t{i % 3}", f"http://127.0.0.1/{i % 3}", body, start + timedelta(minutes=10 * i))
    now = start + timedelta(days=2)
    data = feed.build(db, 14, now=now)
    assert len(data) <= feed.MAX_BYTES
    root = atom(data)
    found = entries(root)
    assert 10 < len(found) < feed.MAX_ENTRIES  # the bytes ran out first
    assert found[0]["updated"] == start + timedelta(minutes=10 * 149)
    assert one(root, "subtitle").text.endswith(f"the newest {len(found)} of 147")  # each target's first is no change
    small = feed.build(db, 14, now=now, max_entries=5)
    assert [e["id"] for e in entries(atom(small))] == [e["id"] for e in found[:5]]
    # One short line per change: the entries run out first.
    for i in range(150, 300):
        store.record_check(db, "short", "http://127.0.0.1/short", f"v{i}", start + timedelta(minutes=10 * i))
    assert len(entries(atom(feed.build(db, 14, now=now + timedelta(days=1))))) == feed.MAX_ENTRIES


def test_changes_before_the_period_are_left_out_and_a_page_flipping_back_is_each_time_an_entry(database_url, db):
    schema.ensure(db)
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    for day, body in enumerate(["a", "b", "a", "b", "b"]):  # the checks of a and of b overlap in time
        store.record_check(db, "daily", "http://127.0.0.1/d", body, start + timedelta(days=day))
    now = start + timedelta(days=4, hours=1)
    assert [e["updated"].day for e in entries(atom(feed.build(db, 3, now=now)))] == [4, 3]
    found = entries(atom(feed.build(db, 14, now=now)))  # entry ids unique, though b is new twice
    assert [(e["updated"].day, e["content"].split("<pre>")[1]) for e in found] == [
        (4, "--- before\n+++ after\n@@ -1 +1 @@\n-a\n+b</pre>"), (3, "--- before\n+++ after\n@@ -1 +1 @@\n-b\n+a</pre>"),
        (2, "--- before\n+++ after\n@@ -1 +1 @@\n-a\n+b</pre>")]


# Any character at all, the ones XML cannot carry (controls, lone surrogates, U+FFFE) more often.
text = st.text(st.one_of(st.characters(exclude_categories=()),
                         st.sampled_from(list("\x00\x01\x0b\x1f\x7f\x85\r\n\ud800\udfff\ufffe\uffff<>&]\"'"))),
               max_size=300)


def xml_read(value: str) -> str:
    """What an XML parser reads back from text the serialiser wrote: line ends normalised."""
    return value.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=text, url=text, before=text, after=text, when=st.datetimes(timezones=st.just(UTC)),
       self_url=st.sampled_from([None, "https://example.org/feed.xml?a=1&b=<2>"]))
def test_any_text_gives_well_formed_xml(name, url, before, after, when, self_url):
    made = feed.entry(store.Change(name, url, when, 2, 1), before, after)
    root = atom(feed.document([made], 1, when, when, self_url))
    [found] = entries(root)
    assert found["title"] == xml_read(feed.clean(name)[:feed.NAME_CHARS] + " changed")
    diff = messages.unified_diff(feed.clean(before), feed.clean(after))
    assert f"<pre>{html.escape(diff)}</pre>" in found["content"]
