"""The scrape function end to end: real PostgreSQL, real HTTP servers on loopback."""

import hashlib
import json
import ssl
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from werkzeug import Response

from functions import scrape as scrape_fn
from shared.app import entry, schema
from shared.core import db as shared_db
from shared.scrape import store
from shared.scrape.job import ScrapeJob
from tests import runs
from tests.seed import BREAKDOWN


@pytest.fixture
def page(httpserver):
    """A loopback page whose body the test sets; returns a setter and the URL."""
    state = {"body": "content", "status": 200}
    httpserver.expect_request("/page").respond_with_handler(
        lambda request: Response(state["body"], status=state["status"], content_type="text/html")
    )

    class Page:
        url = httpserver.url_for("/page")

        def set(self, body=None, status=200):
            if body is not None:
                state["body"] = body
            state["status"] = status

    return Page()


@pytest.fixture(scope="module")
def untrusted_tls_url():
    """An HTTPS page whose certificate comes from a CA the client does not trust."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_port}/"
    server.shutdown()


class _SlowHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(30):  # drip the body: each read is quick, the whole is not
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.1)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def slow_url():
    """A page that answers at once but takes 3 s to send its body (its own threaded server)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def write_jobs(tmp_path, monkeypatch, text):
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    monkeypatch.setenv("JOBS_FILE", str(path))
    return path


def cli(capsys, *args):
    code = scrape_fn.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_new_unchanged_changed(database_url, page, capsys):
    assert cli(capsys, "--url", page.url, "--name", "p")[:2] == (0, "p: new\n")
    assert cli(capsys, "--url", page.url, "--name", "p")[:2] == (0, "p: unchanged\n")
    page.set("changed")
    assert cli(capsys, "--url", page.url, "--name", "p")[:2] == (0, "p: changed\n")
    page.set("content")  # back to a content seen before: still a change
    assert cli(capsys, "--url", page.url, "--name", "p")[:2] == (0, "p: changed\n")


def test_seed_scenario_rows_and_breakdown(database_url, db, page, capsys):
    """The seed's test script: content, content, then changed."""
    cli(capsys, "--url", page.url)
    cli(capsys, "--url", page.url)
    page.set("changed")
    cli(capsys, "--url", page.url)
    rows = db.run("SELECT id, left(hash::text, 3) || '...', body, cardinality(seen_at) FROM scraps ORDER BY id")
    # Like the seed's output: the conflicting insert used up id 2.
    assert [(r[0], r[2], r[3]) for r in rows] == [(1, "content", 2), (3, "changed", 1)]
    hashes = db.run("SELECT body, hash FROM scraps")
    assert all(bytes(h) == hashlib.sha256(body.encode()).digest() for body, h in hashes)
    assert db.run("SELECT count(*) FROM scraps")[0][0] == 2
    assert db.run("SELECT count(*) FROM (SELECT unnest(seen_at) FROM scraps) un")[0][0] == 3
    today = datetime.now(timezone.utc).date().isoformat()
    assert [tuple(r) for r in db.run(BREAKDOWN)] == [(today, 3, 1), ("Total:", 3, 1)]


def test_breakdown_per_day_over_history(db):
    """Checks spread over three days, with changes on two of them, through the storage API."""
    schema.ensure(db)
    day0 = datetime(2016, 4, 4, 12, tzinfo=timezone.utc)
    bodies = ["a"] * 5 + ["b"] * 3 + ["b"] * 4 + ["c", "a", "a"] + ["a"] * 2
    days = [0] * 5 + [1] * 3 + [1] * 4 + [2] * 3 + [2] * 2
    for i, (body, day) in enumerate(zip(bodies, days)):
        store.record_check(db, "t", "http://x/", body, day0 + timedelta(days=day, minutes=i))
    rows = [tuple(r) for r in db.run(BREAKDOWN)]
    # The seed's query counts distinct bodies per day minus one.
    assert rows == [("2016-04-04", 5, 0), ("2016-04-05", 7, 0), ("2016-04-06", 5, 1), ("Total:", 17, 1)]


def test_history_beyond_one_segment_is_complete_and_ordered(db):
    schema.ensure(db)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    n = store.SEGMENT_SIZE * 2 + 7
    for i in range(n):
        store.record_check(db, "t", "http://x/", "same", start + timedelta(minutes=10 * i))
    assert db.run("SELECT count(*), max(cardinality(seen_at)) FROM scrape_seen")[0] == [3, store.SEGMENT_SIZE]
    (seen,) = db.run("SELECT seen_at FROM scraps")[0]
    assert len(seen) == n and seen == sorted(seen) and seen[0] == start


@pytest.mark.parametrize(
    "make_url, reason",
    [
        (lambda s: "http://nonexistent.invalid/", "DNS lookup failed"),
        (lambda s: "http://127.0.0.1:9/", "connection refused"),
        (lambda s: s.slow_url, "timed out"),
        (lambda s: s.untrusted_tls_url, "TLS error: certificate verify failed"),
        (lambda s: s.url_for("/missing"), "HTTP 404"),
        (lambda s: s.url_for("/broken"), "HTTP 503"),
        (lambda s: s.url_for("/huge"), "byte cap"),
    ],
    ids=["dns", "refused", "timeout", "tls", "http-4xx", "http-5xx", "too-large"],
)
def test_each_error_kind_is_recorded_never_stored(database_url, db, httpserver, untrusted_tls_url, slow_url, tmp_path,
                                                  monkeypatch, capsys, make_url, reason):
    httpserver.untrusted_tls_url, httpserver.slow_url = untrusted_tls_url, slow_url
    httpserver.expect_request("/missing").respond_with_data("nope", status=404)
    httpserver.expect_request("/broken").respond_with_data("down", status=503)
    httpserver.expect_request("/slow").respond_with_handler(lambda r: (time.sleep(3), Response("late"))[1])
    httpserver.expect_request("/huge").respond_with_data("x" * (6 * 1024 * 1024))
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "t"\nurl = "{make_url(httpserver)}"\ntimeout = 1\n')
    code, out, _ = cli(capsys)
    assert code == 1
    assert out.startswith("t: error: ") and reason in out
    assert db.run("SELECT count(*) FROM scrape_contents")[0][0] == 0
    streak, error = db.run("SELECT error_streak, last_error FROM scrape_targets WHERE name = 't'")[0]
    assert streak == 1 and reason in error


def test_failures_count_a_streak_that_success_clears(database_url, db, page, capsys):
    cli(capsys, "--url", page.url, "--name", "p")
    page.set(status=500)
    for _ in range(3):
        assert cli(capsys, "--url", page.url, "--name", "p")[0] == 1
    assert db.run("SELECT error_streak FROM scrape_targets")[0][0] == 3
    page.set(status=200)
    assert cli(capsys, "--url", page.url, "--name", "p")[:2] == (0, "p: unchanged\n")
    assert db.run("SELECT error_streak FROM scrape_targets")[0][0] == 0
    # Failed checks are not checks of the content: 2 recorded, not 5.
    assert db.run("SELECT cardinality(seen_at) FROM scraps")[0][0] == 2


def test_one_failure_does_not_stop_the_others(database_url, db, page, tmp_path, monkeypatch, capsys):
    write_jobs(tmp_path, monkeypatch, f"""
[[scrape]]
name = "good"
url = "{page.url}"

[[scrape]]
name = "bad"
url = "http://127.0.0.1:9/"
""")
    code, out, _ = cli(capsys)
    assert code == 1
    assert out.splitlines() == ["good: new", "bad: error: connection refused"]
    assert db.run("SELECT count(*) FROM scraps WHERE target = 'good'")[0][0] == 1


def test_job_selection(database_url, page, tmp_path, monkeypatch, capsys):
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "a"\nurl = "{page.url}"\n\n'
                                      f'[[scrape]]\nname = "b"\nurl = "{page.url}"\n')
    assert cli(capsys, "--job", "b")[:2] == (0, "b: new\n")
    assert cli(capsys, "--job", "a", "--job", "b")[:2] == (0, "a: new\nb: unchanged\n")


def test_same_scheduled_event_twice_records_one_check(database_url, db, page, tmp_path, monkeypatch):
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "p"\nurl = "{page.url}"\n')
    event = {"job": "p", "scheduled_time": "2026-11-21T10:00:00Z"}
    assert scrape_fn.handler(event, None)["results"][0]["outcome"] == "new"
    again = scrape_fn.handler(json.loads(json.dumps(event)), None)["results"][0]
    assert again["outcome"] == "duplicate"
    assert db.run("SELECT cardinality(seen_at) FROM scraps")[0][0] == 1
    # The next scheduled run is a new check.
    assert scrape_fn.handler({**event, "scheduled_time": "2026-11-21T10:10:00Z"}, None)["results"][0]["outcome"] == "unchanged"


def test_rule_event_redelivered_records_one_check(database_url, db, page, tmp_path, monkeypatch):
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "p"\nurl = "{page.url}"\n')
    event = {"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
             "time": "2026-11-21T10:00:00Z", "resources": [], "detail": {}}
    scrape_fn.handler(event, None)
    scrape_fn.handler(event, None)
    assert db.run("SELECT cardinality(seen_at) FROM scraps")[0][0] == 1


def test_handler_stores_a_failing_page_without_raising(database_url, db, page, tmp_path, monkeypatch):
    """A page that fails is that target's error, not the invocation's: retrying would not
    mend a 404, and would only fill the dead-letter queue."""
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "good"\nurl = "{page.url}"\n\n'
                                      '[[scrape]]\nname = "bad"\nurl = "http://127.0.0.1:9/"\n')
    event = {"scheduled_time": "2026-11-21T10:00:00Z"}
    result = scrape_fn.handler(event, None)
    assert result["failed"] == 1
    assert [(r["job"], r["outcome"]) for r in result["results"]] == [("good", "new"), ("bad", "error")]
    # The same event again (at-least-once delivery): the good target is not checked twice, the
    # bad one is tried again without counting as a second failure.
    again = scrape_fn.handler(event, None)
    assert [(r["job"], r["outcome"]) for r in again["results"]] == [("good", "duplicate"), ("bad", "error")]
    assert db.run("SELECT cardinality(seen_at) FROM scraps")[0][0] == 1
    assert db.run("SELECT error_streak FROM scrape_targets WHERE name = 'bad'")[0][0] == 1


class _LambdaContext:
    """What the handler reads of Lambda's context object: the time left."""

    def __init__(self, seconds):
        self.seconds = seconds

    def get_remaining_time_in_millis(self):
        return int(self.seconds * 1000)


def test_handler_raises_when_time_runs_out_and_its_retry_does_the_rest(database_url, db, page, tmp_path,
                                                                       monkeypatch):
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "quick"\nurl = "{page.url}"\ntimeout = 1\n\n'
                                      f'[[scrape]]\nname = "slow"\nurl = "{page.url}?slow"\ntimeout = 100\n')
    event = {"scheduled_time": "2026-11-21T10:00:00Z"}
    # 30 s left: "quick" (1 s fetch) fits, "slow" (up to 100 s) would not finish in time.
    with pytest.raises(entry.RunFailed, match="slow: skipped: not checked: the run's time ran out"):
        scrape_fn.handler(event, _LambdaContext(30))
    assert db.run("SELECT target FROM scraps") == [["quick"]]
    result = scrape_fn.handler(event, _LambdaContext(600))  # Lambda's retry, with time enough
    assert [(r["job"], r["outcome"]) for r in result["results"]] == [("quick", "duplicate"), ("slow", "new")]


def test_a_user_who_cannot_write_ends_the_run_before_anything_is_fetched(database_url, db, page, tmp_path, monkeypatch):
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "p"\nurl = "{page.url}"\n')
    schema.ensure(db)
    db.run("REVOKE INSERT ON scrape_contents FROM PUBLIC")
    db.run("CREATE ROLE reader LOGIN")
    db.run("GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO reader")
    db.run("GRANT INSERT ON scrape_targets, scrape_seen, scrape_errors, scrape_filter_edits, refresh_jobs, refresh_runs TO reader")
    db.run("GRANT DELETE ON scrape_errors, scrape_filter_edits TO reader")
    db.run("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO reader")
    monkeypatch.setenv("DATABASE_URL", database_url.replace("postgresql://postgres@", "postgresql://reader@"))
    try:
        # Found before anything is fetched: one line naming what is missing, exit 2.
        with pytest.raises(shared_db.DatabaseRefused, match=r"lacks privileges a run needs \(INSERT on scrape_contents\)"):
            scrape_fn.handler({"scheduled_time": "2026-11-21T10:00:00Z"}, None)
        monkeypatch.setenv("JOBS_TOML", f'[[scrape]]\nname = "p"\nurl = "{page.url}"\n')
        done = subprocess.run([sys.executable, "-m", "functions.scrape"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent.parent, timeout=120)
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr.startswith("error: the database user lacks privileges a run needs (INSERT on scrape_contents)")
        assert "Traceback" not in done.stderr
    finally:
        db.run("DROP OWNED BY reader")
        db.run("DROP ROLE reader")


@pytest.mark.parametrize("run_key, checks", [(None, 2), ("2026-11-21T10:00:00Z", 1)])
def test_two_concurrent_runs(database_url, db, page, run_key, checks):
    """Two runs of one job at once: no lost check, no duplicate content row."""
    jobs = [ScrapeJob("p", page.url)]
    barrier = threading.Barrier(2)
    results, errors = [], []

    def one_run():
        try:
            barrier.wait()
            results.extend(runs.scrape(jobs, run_key=run_key))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.run("SELECT count(*) FROM scrape_contents")[0][0] == 1
    assert db.run("SELECT cardinality(seen_at) FROM scraps")[0][0] == checks
    assert sorted(r.outcome for r in results) == sorted(["new", "unchanged" if checks == 2 else "duplicate"])


def test_first_runs_racing_to_create_the_schema(database_url):
    from shared.core import db as shared_db

    errors = []

    def migrate():
        con = shared_db.connect(database_url)
        try:
            schema.ensure(con)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            con.close()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    con = shared_db.connect(database_url)
    assert con.run("SELECT count(*) FROM schema_migrations")[0][0] == len(schema.MIGRATIONS)
    con.close()


def test_migrate_command_is_idempotent(database_url, capsys):
    from functions import migrate

    assert migrate.main() == 0
    assert migrate.main() == 0
    assert capsys.readouterr().out == f"schema at version {len(schema.MIGRATIONS)}\n" * 2


def test_user_agent_names_the_project(database_url, httpserver, capsys):
    seen = {}

    def handler(request):
        seen["ua"] = request.headers.get("User-Agent")
        return Response("ok")

    httpserver.expect_request("/ua").respond_with_handler(handler)
    cli(capsys, "--url", httpserver.url_for("/ua"))
    from shared.core.names import NAME, VERSION

    assert seen["ua"].startswith(f"{NAME}/{VERSION}")


@pytest.mark.parametrize(
    "jobs_text, message",
    [
        ('[[scrape]]\nname = "a"\n', "job 'a': missing required key 'url'"),
        ('[[scrape]]\nname = "a"\nurl = "http://x/"\nurll = "y"\n', "job 'a': unknown key 'urll'"),
        ('[[scrape]]\nname = "a"\nurl = "ftp://x/"\n', "job 'a': key 'url' must be an http:// or https:// address, not ftp://"),
        ('[[scrape]]\nname = "a"\nurl = "http://x/"\ntimeout = "soon"\n', "key 'timeout' must be"),
        ('[[scrape]]\nname = "a"\nurl = "${NOT_SET_ANYWHERE}"\n', "job 'a': key 'url' uses ${NOT_SET_ANYWHERE}"),
        ('[[scrape]]\nurl = "http://x/"\n', "[[scrape]] #1: missing required key 'name'"),
        ('[[scrape]]\nname = "a"\nurl = "http://x/"\n[[scrape]]\nname = "a"\nurl = "http://y/"\n', "two [[scrape]] jobs are named 'a'"),
        ('[[scrap]]\nname = "a"\n', "unknown section [[scrap]]"),
        ('[[scrape]\nname = "a"\n', "not valid TOML"),
    ],
)
def test_bad_configuration_exits_2_naming_the_problem(database_url, tmp_path, monkeypatch, capsys, jobs_text, message):
    path = write_jobs(tmp_path, monkeypatch, jobs_text)
    code, out, err = cli(capsys)
    assert code == 2 and out == ""
    assert str(path) in err and message in err


def test_missing_jobs_file_and_unknown_job(database_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "none.toml"))
    code, _, err = cli(capsys)
    assert code == 2 and "none.toml: jobs file not found" in err
    write_jobs(tmp_path, monkeypatch, '[[scrape]]\nname = "a"\nurl = "http://x/"\n')
    code, _, err = cli(capsys, "--job", "zz")
    assert code == 2 and "no [[scrape]] job named 'zz' (known: a)" in err


def test_bad_database_url_exits_2_and_unreachable_database_hides_the_password(monkeypatch, page, capsys):
    monkeypatch.setenv("DATABASE_URL", "mysql://u:pw@h/db")
    code, _, err = cli(capsys, "--url", page.url)
    assert code == 2 and "postgres://" in err
    monkeypatch.setenv("DATABASE_URL", "postgres://user:s3cr%40t-pass@127.0.0.1:9/db")
    code, out, err = cli(capsys, "--url", page.url)
    assert code == 1 and "cannot connect to postgresql://user@127.0.0.1:9/db" in err
    assert "s3cr" not in out + err


def test_compressed_and_chunked_pages_are_stored_decoded(database_url, db, httpserver, capsys):
    import gzip

    body = "<p>café " + "x" * 5000 + "</p>"
    httpserver.expect_request("/gz").respond_with_response(
        Response(gzip.compress(body.encode()), headers={"Content-Encoding": "gzip"}, content_type="text/html; charset=utf-8"))
    httpserver.expect_request("/chunked").respond_with_response(
        Response(iter([body[:100].encode(), body[100:].encode()]), content_type="text/html; charset=utf-8"))
    assert cli(capsys, "--url", httpserver.url_for("/gz"), "--name", "gz")[0] == 0
    assert cli(capsys, "--url", httpserver.url_for("/chunked"), "--name", "chunked")[0] == 0
    assert [r[0] for r in db.run("SELECT body FROM scraps ORDER BY target")] == [body, body]


def test_a_secret_from_the_environment_stays_out_of_storage_and_output(database_url, db, httpserver, tmp_path,
                                                                        monkeypatch, capsys):
    """url = "...?key=${FEED_KEY}": the key is used for the request, never stored or shown."""
    seen = {}
    httpserver.expect_request("/feed").respond_with_handler(
        lambda r: (seen.setdefault("key", r.args.get("key")), Response("x", status=500))[1])
    monkeypatch.setenv("FEED_KEY", "k-93f1c2-secret")
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "feed"\nurl = "{httpserver.url_for("/feed")}?key=${{FEED_KEY}}"\n'
                                      'notify = ["json://127.0.0.1:9/${FEED_KEY}"]\n')
    code, out, err = cli(capsys)
    assert seen["key"] == "k-93f1c2-secret"  # the request carried it
    assert code == 1 and "k-93f1c2" not in out + err
    url, error = db.run("SELECT url, last_error FROM scrape_targets")[0]
    assert url.endswith("?key=***") and "k-93f1c2" not in error
    dumped = db.run("SELECT string_agg(t::text, ' ') FROM scrape_targets t")[0][0]
    assert "k-93f1c2" not in dumped
