"""Many targets per run: parallel fetches, conditional requests, batched writes, shards."""

import hashlib
import logging
import re
import threading
import time

import pytest
from werkzeug import Response

from functions import scrape as scrape_fn
from shared.app import entry, events, schema
from shared.app.kinds import KINDS
from shared.scrape import run as scrape
from shared.scrape import store
from shared.scrape.job import ScrapeJob
from tests import runs


class Site:
    """Loopback pages with ETag and Last-Modified, answering conditional requests with 304,
    and counting what they were asked and sent."""

    def __init__(self, httpserver, etag=True, last_modified=True):
        self.httpserver, self.etag, self.last_modified = httpserver, etag, last_modified
        self.bodies, self.requests, self.conditional, self.body_bytes = {}, 0, 0, 0
        self.lock = threading.Lock()
        httpserver.expect_request("/hop").respond_with_handler(
            lambda r: Response("", status=302, headers={"Location": self.url("p0")}))
        httpserver.expect_request(__import__("re").compile(r"^/p\d+$")).respond_with_handler(self.answer)

    def url(self, page):
        return self.httpserver.url_for(f"/{page}")

    def answer(self, request):
        body = self.bodies.get(request.path.lstrip("/"), "default page")
        tag = '"' + hashlib.sha1(body.encode()).hexdigest() + '"'
        headers = {}
        if self.etag:
            headers["ETag"] = tag
        if self.last_modified:
            headers["Last-Modified"] = "Sat, 21 Nov 2026 10:00:00 GMT"
        with self.lock:
            self.requests += 1
            asked = request.headers.get("If-None-Match") or request.headers.get("If-Modified-Since")
            self.conditional += bool(asked)
            if (self.etag and request.headers.get("If-None-Match") == tag) or (
                    not self.etag and request.headers.get("If-Modified-Since") == headers.get("Last-Modified")):
                return Response(status=304, headers=headers)
            self.body_bytes += len(body)
        return Response(body, headers=headers, content_type="text/html")


def seen(db, target):
    return db.run("SELECT coalesce(sum(cardinality(seen_at)), 0) FROM scraps WHERE target = :t", t=target)[0][0]


def test_parallel_results_equal_one_by_one(database_url, db, httpserver):
    site = Site(httpserver)
    jobs = [ScrapeJob(f"t{i}", site.url(f"p{i}")) for i in range(40)] + [ScrapeJob("down", "http://127.0.0.1:9/")]
    for i in range(40):
        site.bodies[f"p{i}"] = f"page {i}"
    one_by_one = runs.scrape(jobs, concurrency=1)
    for i in range(0, 40, 3):
        site.bodies[f"p{i}"] = f"page {i}, changed"
    serial = [r.line() for r in runs.scrape(jobs, concurrency=1)]
    db.run("TRUNCATE scrape_targets CASCADE")
    assert [r.line() for r in runs.scrape(jobs, concurrency=32)] == [r.line() for r in one_by_one]
    for i in range(0, 40, 3):
        site.bodies[f"p{i}"] = f"page {i}, changed again"
    parallel = [r.line() for r in runs.scrape(jobs, concurrency=32)]
    assert parallel == serial and parallel.count("down: error: connection refused") == 1
    assert sum(line.endswith(": changed") for line in parallel) == 14


def test_a_304_is_an_unchanged_check_without_a_body(database_url, db, httpserver):
    site = Site(httpserver)
    site.bodies["p1"] = "<p>agenda</p>"
    job = [ScrapeJob("agenda", site.url("p1"))]
    assert runs.scrape(job)[0].outcome == "new"
    sent = site.body_bytes
    assert [r.outcome for r in runs.scrape(job) + runs.scrape(job)] == ["unchanged", "unchanged"]
    assert site.conditional == 2 and site.body_bytes == sent  # two 304s: no body sent
    assert seen(db, "agenda") == 3  # each 304 recorded its check time
    site.bodies["p1"] = "<p>agenda, new item</p>"
    assert runs.scrape(job)[0].outcome == "changed"
    assert db.run("SELECT body FROM scraps WHERE target = 'agenda' ORDER BY id DESC LIMIT 1")[0][0] == "<p>agenda, new item</p>"


def test_last_modified_alone_is_used(database_url, db, httpserver):
    site = Site(httpserver, etag=False)
    job = [ScrapeJob("lm", site.url("p2"))]
    runs.scrape(job)
    assert runs.scrape(job)[0].outcome == "unchanged" and site.conditional == 1
    assert seen(db, "lm") == 2


def test_conditional_requests_can_be_turned_off(database_url, db, httpserver):
    site = Site(httpserver)
    job = [ScrapeJob("off", site.url("p3"), conditional=False)]
    for _ in range(3):
        runs.scrape(job)
    assert site.conditional == 0 and site.requests == 3 and seen(db, "off") == 3
    assert db.run("SELECT etag FROM scrape_targets WHERE name = 'off'")[0][0] is None


def test_edited_filters_fetch_the_whole_page_again(database_url, db, httpserver):
    site = Site(httpserver)
    site.bodies["p4"] = "<div id=a>kept</div><div id=b>other</div>"
    runs.scrape([ScrapeJob("f", site.url("p4"))])
    result = runs.scrape([ScrapeJob("f", site.url("p4"), select=("#a",))])[0]
    assert site.conditional == 0  # a 304 would have kept the unfiltered body
    assert result.outcome == "changed"
    assert db.run("SELECT body FROM scraps WHERE target = 'f' ORDER BY id DESC LIMIT 1")[0][0] == "kept"


def test_a_304_after_a_redirect_drops_the_validators(database_url, db, httpserver):
    site = Site(httpserver)
    site.bodies["p0"] = "landing"
    job = [ScrapeJob("hop", site.url("hop"))]
    runs.scrape(job)
    # A redirect's validators belong to the page it led to: none are kept, none sent.
    assert db.run("SELECT etag FROM scrape_targets WHERE name = 'hop'")[0][0] is None
    db.run("UPDATE scrape_targets SET etag = :tag", tag='"' + hashlib.sha1(b"landing").hexdigest() + '"')
    result = runs.scrape(job)[0]  # 304 for p0 after the redirect: inconsistent, fetched again plainly
    assert result.outcome == "unchanged" and seen(db, "hop") == 2
    assert db.run("SELECT etag FROM scrape_targets WHERE name = 'hop'")[0][0] is None


def test_a_304_nobody_asked_for_is_an_error(database_url, db, httpserver):
    httpserver.expect_request("/odd").respond_with_response(Response(status=304))
    result = runs.scrape([ScrapeJob("odd", httpserver.url_for("/odd"))])[0]
    assert result.outcome == "error" and "304" in result.reason
    assert db.run("SELECT count(*) FROM scrape_contents")[0][0] == 0


def committed_transactions(db) -> int:
    db.run("SELECT pg_stat_clear_snapshot()")
    return db.run("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")[0][0]


def test_a_run_writes_in_a_bounded_number_of_transactions(database_url, db, httpserver, caplog):
    site = Site(httpserver)
    jobs = [ScrapeJob(f"t{i}", site.url(f"p{i}")) for i in range(250)]
    schema.ensure(db)
    caplog.set_level(logging.DEBUG, logger=scrape.__name__)
    before = committed_transactions(db)
    results = runs.scrape(jobs)
    # The run's connection has closed, so its statistics are flushed: every statement outside
    # BEGIN ... COMMIT counts as one transaction too.
    after = committed_transactions(db)
    assert {r.outcome for r in results} == {"new"}
    # A batch is written every BATCH_SIZE checks or BATCH_SECONDS, whichever comes first: on a
    # loaded machine there are more batches than 250 / BATCH_SIZE, but each is one transaction.
    batches = [int(m.group(1)) for r in caplog.records
               if (m := re.match(r"wrote a batch of (\d+) checks", r.getMessage()))]
    assert sum(batches) == 250 and max(batches) <= scrape.BATCH_SIZE
    assert len(batches) < 250 / 2  # checks are grouped, not written one by one
    assert after - before <= len(batches) + 9  # one per batch + a few single statements
    assert db.run("SELECT count(*) FROM scrape_contents")[0][0] == 250


def test_a_failing_write_loses_only_its_own_check(database_url, db, httpserver):
    """A real database error for one target (a trigger refusing its content) fails its batch;
    the batch is then written check by check."""
    site = Site(httpserver)
    for i in range(5):
        site.bodies[f"p{i}"] = f"page {i}" if i != 3 else "poison"
    schema.ensure(db)
    db.run("""CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN IF NEW.body = 'poison' THEN RAISE EXCEPTION 'poisoned content'; END IF; RETURN NEW; END $$""")
    db.run("CREATE TRIGGER refuse_poison BEFORE INSERT ON scrape_contents FOR EACH ROW EXECUTE FUNCTION refuse_poison()")
    results = runs.scrape([ScrapeJob(f"t{i}", site.url(f"p{i}")) for i in range(5)])
    assert [r.outcome for r in results] == ["new", "new", "new", "error", "new"]
    assert "poisoned content" in results[3].reason
    assert db.run("SELECT count(*) FROM scrape_contents")[0][0] == 4
    # Nothing of the failed check was stored: no half-written target either.
    assert db.run("SELECT last_content_id FROM scrape_targets WHERE name = 't3'") in ([], [[None]])


@pytest.fixture
def many_jobs(tmp_path, monkeypatch, httpserver):
    site = Site(httpserver)
    lines = "".join(f'[[scrape]]\nname = "job{i}"\nurl = "{site.url(f"p{i}")}"\n\n' for i in range(30))
    (tmp_path / "jobs.toml").write_text(lines)
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "jobs.toml"))
    return [f"job{i}" for i in range(30)]


def test_shards_split_the_jobs_stably_and_completely(database_url, many_jobs, capsys):
    names = []
    for index in (1, 2, 3):
        assert scrape_fn.main(["--shard", f"{index}/3"]) == 0
        shard = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
        assert 3 <= len(shard) <= 17  # about a third each
        request = events.Request(shard=(index, 3))
        assert entry.resolve(KINDS["scrape"], request) == entry.resolve(KINDS["scrape"], request)
        names += shard
    assert sorted(names) == sorted(many_jobs)


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1/0", "x/2", "2"])
def test_bad_shard_is_a_usage_error(database_url, many_jobs, capsys, spec):
    assert scrape_fn.main(["--shard", spec]) == 2
    assert f"--shard {spec}" in capsys.readouterr().err


def test_scrape_concurrency_from_the_environment(monkeypatch):
    monkeypatch.setenv("SCRAPE_CONCURRENCY", "7")
    assert scrape.default_concurrency() == 7
    monkeypatch.setenv("SCRAPE_CONCURRENCY", "lots")
    with pytest.raises(Exception, match="SCRAPE_CONCURRENCY='lots'"):
        scrape.default_concurrency()


def test_all_304_batch(database_url, db, httpserver):
    """A batch made only of 304s (no body in it at all) is stored like any other."""
    site = Site(httpserver)
    jobs = [ScrapeJob(f"t{i}", site.url(f"p{i}")) for i in range(3)]
    runs.scrape(jobs)
    assert [r.outcome for r in runs.scrape(jobs)] == ["unchanged"] * 3
    assert site.conditional == 3 and sum(seen(db, f"t{i}") for i in range(3)) == 6
    assert store.target_states(db, ["t0"], None)["t0"].etag is not None


@pytest.mark.parametrize("handler", ["functions.scrape", "functions.carto_refresh", "functions.dispatch"])
def test_importing_a_handler_loads_only_what_every_run_needs(handler):
    """Cold start: HTML parsing, notification services, boto3, argparse and the PostgreSQL
    driver (a CARTO refresh never needs it) load when used."""
    import subprocess
    import sys

    lazy = ("selectolax", "apprise", "boto3", "botocore", "argparse", "pg8000")
    code = f"import sys, {handler}; print([m for m in {lazy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_run_stopped_by_its_settings_leaves_no_connection_open(database_url, db, httpserver, monkeypatch):
    """The run's first connection goes to the writer; a setting refused before the writer starts
    (here the memory budget) must not leave it open."""
    from shared.core.errors import ConfigError
    from shared.core.names import NAME

    site = Site(httpserver)
    monkeypatch.setenv("SCRAPE_MEMORY_MB", "1")
    with pytest.raises(ConfigError, match="SCRAPE_MEMORY_MB"):
        runs.scrape([ScrapeJob("t", site.url("p0"))])
    # A closed connection's backend leaves pg_stat_activity a moment after; a leaked one never does.
    for _ in range(200):
        others = db.run("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid() AND application_name = :name", name=NAME)[0][0]
        if others == 0:
            break
        time.sleep(0.05)
    assert others == 0
