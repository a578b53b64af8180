"""Attacks on the refresh kind and the history tools, each a promise of the README's "Refresh a
CARTO table", "Guarantees" and "Your history" sections: CARTO answers of odd shapes end as one
clear line without any piece of the key, PostgreSQL refreshes stay within their time budget and
never report a rolled-back statement as done, a history database that never answers does not
hold a refresh, odd seed data is refused (or adopted) with one line, the report never links a
script. Real loopback servers and the real PostgreSQL; only generous upper bounds on time."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from werkzeug import Response

from shared.refresh import carto
from shared.refresh import run as refresh_run
from shared.refresh.job import RefreshJob
from tests import runs
from tests.carto_fixtures import FAST, KEY
from tests.test_adopt import command, jobs_file, page, seed_run  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent
GENEROUS = 15.0  # seconds: far below what the broken code took (30 s and more), far above the work


def v2_job(url: str, **keys) -> RefreshJob:
    return RefreshJob(**{"name": "j", "api_key": KEY, "username": "demo", "sql_api_url": url, **keys})


def failure(job: RefreshJob, budget: float = 10.0) -> carto.CartoError:
    with pytest.raises(carto.CartoError) as raised:
        carto.refresh(job, time.monotonic() + budget, timing=FAST)
    return raised.value


def key_pieces(text: str, size: int = 6) -> list[str]:
    """The pieces of the key (of `size` characters) that `text` shows."""
    return [KEY[i:i + size] for i in range(len(KEY) - size + 1) if KEY[i:i + size] in text]


def one_line(text: str) -> bool:
    return not any(ord(c) < 32 or c in "\x7f\u2028\u2029" or "\ud800" <= c <= "\udfff" for c in text)


class Silent:
    """A loopback server that accepts connections and never answers (nor closes them)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()


# -- a 200 with an `error` is a failure, whatever the error's size or depth ---------------------

@pytest.mark.parametrize("error", [
    b'{"message": "' + b"m" * 40_000 + b'"}',  # an object too big to keep
    b"1" * 40_000,  # a number too big to keep
    b"[" * 30_000 + b"]" * 30_000,  # nested deeper than Python parses
], ids=["huge object", "huge number", "deep nesting"])
def test_a_200_whose_error_is_too_big_or_deep_to_keep_is_still_a_failure(httpserver, error):
    httpserver.expect_request("/api/v2/sql").respond_with_data(b'{"rows":[],"error":' + error + b"}",
                                                               content_type="application/json")
    reason = failure(v2_job(httpserver.url_for("/api/v2/sql"))).reason
    assert reason.startswith("HTTP 200 (failed): ") and len(reason) < 5000 and one_line(reason)


# -- no piece of the key, wherever an answer is cut --------------------------------------------

@pytest.mark.parametrize("status, body", [
    (400, json.dumps({"error": ["x" * (carto.MESSAGE_CHARS - 12) + KEY]})),  # CARTO's message, cut
    (400, json.dumps({"detail": "x" * 179 + KEY})),  # a body quoted in the reason, cut
    (200, "<p>" + "x" * 187 + KEY + "</p>"),  # an answer that is not JSON, quoted
    (200, '{"error": ["bad key \\u0073k-test-master-9f3c2b7a41'),  # cut short, the key JSON-escaped
    (400, json.dumps({"error": [KEY * 700]})),  # cut mid-key where redaction left it short
], ids=["message", "body", "not JSON", "escaped", "dense"])
def test_no_piece_of_the_key_survives_where_an_answer_is_cut(httpserver, status, body):
    httpserver.expect_request("/api/v2/sql").respond_with_data(body, status=status, content_type="application/json")
    reason = failure(v2_job(httpserver.url_for("/api/v2/sql"))).reason
    assert not key_pieces(reason), reason[-300:]


def test_no_piece_of_the_key_in_a_value_cut_to_its_80_characters(httpserver):
    httpserver.expect_request("/api/v2/sql").respond_with_json({"rows": [{"a": "x" * 66 + KEY}], "total_rows": 1})
    outcome = carto.refresh(v2_job(httpserver.url_for("/api/v2/sql")), time.monotonic() + 10, timing=FAST)
    assert outcome.total_rows == 1 and not key_pieces(outcome.summary()), outcome.summary()


def test_no_piece_of_the_key_in_a_batch_jobs_failed_reason_its_line_or_its_stored_error(httpserver, database_url,
                                                                                         db, tmp_path):
    """The key, repeated so that redaction shortens the 16 kB kept of it below every later cut,
    ends mid-key where the answer is cut: that piece must go too, in the line and in the history."""
    httpserver.expect_request("/api/v2/sql/job", method="POST").respond_with_json(
        {"job_id": "j1", "status": "pending"}, status=201)
    httpserver.expect_request("/api/v2/sql/job/j1").respond_with_json(
        {"job_id": "j1", "status": "failed", "failed_reason": KEY * 700})
    jobs = (f'[[refresh]]\nname = "dense"\nusername = "demo"\napi_key = "${{ATTACK_KEY}}"\nalways_batch = true\n'
            f'sql_api_url = "{httpserver.url_for("/api/v2/sql")}"\n')
    done = subprocess.run([sys.executable, "-m", "functions.carto_refresh", "--run-key", "2026-01-01T00:00:00Z"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JOBS_TOML": jobs, "ATTACK_KEY": KEY, "NOTIFY_URLS": ""})
    assert done.returncode == 1 and done.stdout.startswith("dense: error: batch job j1 failed:"), done
    assert not key_pieces(done.stdout + done.stderr)
    stored = db.run("SELECT r.error, j.last_error FROM refresh_runs r JOIN refresh_jobs j ON j.id = r.job_id")
    assert stored and not key_pieces(" ".join(stored[0]))


def test_a_poll_answer_echoing_its_basic_authorization_shows_no_key(httpserver):
    """The Batch API's polls carry the key as HTTP Basic: base64 of "user:key" is the key too."""
    httpserver.expect_request("/api/v2/sql/job", method="POST").respond_with_json(
        {"job_id": "j1", "status": "pending"}, status=201)
    httpserver.expect_request("/api/v2/sql/job/j1").respond_with_handler(
        lambda request: Response(json.dumps({"error": [f"refused: {request.headers['Authorization']}"]}),
                                 status=400, content_type="application/json"))
    reason = failure(v2_job(httpserver.url_for("/api/v2/sql"), always_batch=True)).reason
    assert reason == "HTTP 400: refused: Basic ***", reason


# -- one line, bounded, whatever CARTO sends ---------------------------------------------------

def test_carto_words_with_line_breaks_and_control_characters_are_one_line(httpserver):
    words = "line one\nline two\r\nthree\x1b[2J\u2028four\x00five\ud800six"
    httpserver.expect_request("/api/v2/sql").respond_with_data(json.dumps({"error": [words]}), status=400,
                                                               content_type="application/json")
    reason = failure(v2_job(httpserver.url_for("/api/v2/sql"))).reason
    assert one_line(reason) and reason.startswith("HTTP 400: line one line two three") and "six" in reason


def test_a_garbled_status_line_is_one_line():
    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        while True:
            try:
                conn = server.accept()[0]
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"FOO BAR\r\n\r\n")
    threading.Thread(target=answer, daemon=True).start()
    try:
        reason = failure(v2_job(f"http://127.0.0.1:{server.getsockname()[1]}/api/v2/sql"), budget=1.0).reason
    finally:
        server.close()
    assert "BadStatusLine" in reason and one_line(reason)


def test_a_lone_surrogate_in_carto_words_is_a_line_not_a_traceback(httpserver):
    """Printing a lone surrogate to stdout raises UnicodeEncodeError: the run's line must not hold one."""
    httpserver.expect_request("/api/v2/sql").respond_with_data(b'{"error":["bad \\ud800 value"]}', status=400,
                                                               content_type="application/json")
    jobs = (f'[[refresh]]\nname = "s"\nusername = "demo"\napi_key = "{KEY}"\n'
            f'sql_api_url = "{httpserver.url_for("/api/v2/sql")}"\n')
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run([sys.executable, "-m", "functions.carto_refresh"], cwd=ROOT, capture_output=True,
                          timeout=120, env={**env, "JOBS_TOML": jobs, "NOTIFY_URLS": "", "PYTHONIOENCODING": "utf-8"})
    assert done.returncode == 1 and b"Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stdout.decode().startswith("s: error: HTTP 400: bad") and done.stdout.count(b"\n") == 1


@pytest.mark.parametrize("answers", [
    [(302, b"", {"Location": "http://elsewhere.example/" + "a" * 60_000})],
    [(201, b'{"job_id": "j1", "status": "pending"}', {}),
     (200, json.dumps({"job_id": "j1", "status": "x" * 30_000}).encode(), {})],
    [(201, b'{"job_id": "j1", "status": "pending"}', {}),
     (200, json.dumps({"job_id": "j1", "status": "failed", "failed_reason": "r\n" * 9_000}).encode(), {})],
], ids=["redirect", "batch status", "failed reason"])
def test_reasons_stay_short_whatever_carto_sends(httpserver, answers):
    answers = list(answers)

    def handler(request):
        status, body, headers = answers.pop(0) if len(answers) > 1 else answers[0]
        return Response(body, status=status, headers=headers, content_type="application/json")

    httpserver.expect_request("/api/v2/sql", method="POST").respond_with_handler(handler)
    httpserver.expect_request("/api/v2/sql/job", method="POST").respond_with_handler(handler)
    httpserver.expect_request("/api/v2/sql/job/j1").respond_with_handler(handler)
    reason = failure(v2_job(httpserver.url_for("/api/v2/sql"), always_batch=len(answers) > 1)).reason
    assert len(reason) < 5000 and one_line(reason)


# -- PostgreSQL mode: within the time budget, and never a silent rollback -----------------------

def sleeping(db) -> list:
    return db.run("SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")


def test_a_statement_that_lifts_its_statement_timeout_is_still_stopped_and_cancelled(database_url, db):
    job = RefreshJob(name="pg", mode="postgres", sql="SET statement_timeout = 0; SELECT pg_sleep(60)",
                     statement_timeout=1)
    started = time.monotonic()
    (result,) = runs.refresh([job])
    assert time.monotonic() - started < GENEROUS
    assert result.outcome == "error" and result.reason.startswith("statement timeout: stopped after"), result
    for _ in range(100):  # the server stopped it too (not only our end of the connection)
        if not sleeping(db):
            break
        time.sleep(0.1)
    assert not sleeping(db)


def test_a_time_budget_shorter_than_the_statement_timeout_says_so(database_url):
    job = RefreshJob(name="pg", mode="postgres", sql="SELECT pg_sleep(60)", time_budget=1.5)
    (result,) = runs.refresh([job])
    assert result.reason.startswith("the time budget ran out during the statement"), result


def test_a_database_that_accepts_and_never_answers_costs_the_budget_not_30_seconds(silent):
    job = RefreshJob(name="pg", mode="postgres", time_budget=3,
                     database_url=f"postgresql://u:pw@127.0.0.1:{silent.port}/db?sslmode=disable")
    started = time.monotonic()
    with pytest.raises(Exception):
        refresh_run.refresh(job, time.monotonic() + job.time_budget, FAST)
    assert time.monotonic() - started < GENEROUS


def test_a_transaction_left_open_is_a_failure_not_a_silent_rollback(database_url, db):
    (left_open,) = runs.refresh([RefreshJob(name="pg", mode="postgres", sql="BEGIN; CREATE TABLE kept (a int)")])
    assert left_open.outcome == "error" and "left a transaction open" in left_open.reason
    (committed,) = runs.refresh([RefreshJob(name="pg", mode="postgres",
                                               sql="BEGIN; CREATE TABLE kept (a int); COMMIT")])
    assert committed.outcome == "ok" and db.run("SELECT to_regclass('kept') IS NOT NULL")[0][0]


@pytest.mark.parametrize("sql", ["SELECT repeat('x', 64 * 1024 * 1024)",
                                 "DO $$BEGIN RAISE EXCEPTION '%', repeat('e', 64 * 1024 * 1024); END$$"],
                         ids=["a huge value", "a huge error"])
def test_a_huge_value_or_error_is_not_read_whole(database_url, sql):
    """pg8000 reads each message whole and decodes it: a 200 MB value cost 840 MB."""
    import tracemalloc

    tracemalloc.start()
    try:
        (result,) = runs.refresh([RefreshJob(name="pg", mode="postgres", sql=sql)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16_000_000, peak
    if result.outcome == "ok":  # counted, its value not read
        assert result.reason.startswith("done on PostgreSQL in") and result.reason.endswith(" s, 1 row")
    else:  # the error's beginning
        assert result.reason.startswith("SQLSTATE P0001: eee") and len(result.reason) < 5000, result.reason[:300]


# -- run history: a database that never answers, two runs at once, one going away --------------

def ok_answer(request):
    return Response('{"rows":[{"process_data":4}],"total_rows":1}', content_type="application/json")


def test_a_history_database_that_never_answers_does_not_hold_the_refresh(httpserver, silent, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:pw@127.0.0.1:{silent.port}/db?sslmode=disable")
    monkeypatch.setenv("NOTIFY_URLS", "")
    httpserver.expect_request("/api/v2/sql").respond_with_handler(ok_answer)
    started = time.monotonic()
    (result,) = runs.refresh([v2_job(httpserver.url_for("/api/v2/sql"), time_budget=20)], run_key="k", timing=FAST)
    assert time.monotonic() - started < GENEROUS
    assert result.outcome == "ok" and "history not recorded" in result.notice, result


def test_two_deliveries_of_one_run_at_once_call_carto_once(httpserver, database_url, monkeypatch):
    monkeypatch.setenv("NOTIFY_URLS", "")
    calls = []

    def slow(request):
        calls.append(1)
        time.sleep(1.0)
        return ok_answer(request)

    httpserver.expect_request("/api/v2/sql").respond_with_handler(slow)
    job = v2_job(httpserver.url_for("/api/v2/sql"))
    results = []
    threads = [threading.Thread(target=lambda: results.extend(runs.refresh([job], run_key="same", timing=FAST)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.outcome for r in results) == ["duplicate", "ok"] and len(calls) == 1


def test_a_database_gone_between_claim_and_finish_still_gives_the_line(httpserver, database_url, monkeypatch, db):
    monkeypatch.setenv("NOTIFY_URLS", "")
    gone = socket.create_server(("127.0.0.1", 0))
    port = gone.getsockname()[1]
    gone.close()  # nothing listens there any more

    def answer_then_lose_the_database(request):
        os.environ["DATABASE_URL"] = f"postgresql://u:pw@127.0.0.1:{port}/db?sslmode=disable"
        return Response('{"error":["boom"]}', status=400, content_type="application/json")

    httpserver.expect_request("/api/v2/sql").respond_with_handler(answer_then_lose_the_database)
    (result,) = runs.refresh([v2_job(httpserver.url_for("/api/v2/sql"))], run_key="k1", timing=FAST)
    assert (result.outcome, result.reason) == ("error", "HTTP 400: boom")
    assert result.notice.startswith("history not recorded: cannot connect to") and "pw" not in result.notice
    assert db.run("SELECT outcome FROM refresh_runs") == [["running"]]  # claimed, never finished


# -- the history tools and the seed's odd data -------------------------------------------------

def test_the_report_never_links_a_script(database_url, db):
    from shared.app import schema

    schema.ensure(db)
    db.run("INSERT INTO scrape_targets (name, url, last_ok_at) VALUES ('x', 'javascript:alert(1)', now())")
    done = command("functions.report", "--html", "-")
    assert done.returncode == 0 and "javascript:alert(1)" in done.stdout
    assert 'href="javascript' not in done.stdout.lower()


def test_an_empty_html_path_is_a_usage_error(database_url):
    done = command("functions.report", "--html", "")
    assert done.returncode == 2 and done.stderr.startswith("error: --html") and "Traceback" not in done.stderr


@pytest.mark.parametrize("times", ["ARRAY[now() - interval '2 hours', NULL]",
                                   "ARRAY['infinity', now() - interval '2 hours']",
                                   "ARRAY['4713-01-01 00:00+00 BC', now() - interval '2 hours']"],
                         ids=["NULL", "infinity", "BC"])
def test_seed_times_no_tool_could_read_are_refused_with_one_line(database_url, db, jobs_file, times):
    seed_run(db, "content")
    db.run(f"INSERT INTO scraps (hash, body, seen_at) VALUES ('\\x01', 'odd', CAST({times} AS timestamptz[]))")
    done = command("functions.migrate", "--adopt-seed", "agenda")
    assert done.returncode == 2 and done.stderr.startswith("error: --adopt-seed: scraps rows 2 have check times")
    assert "Traceback" not in done.stderr and db.run("SELECT to_regclass('scraps_seed')") == [[None]]


@pytest.mark.parametrize("sql, words", [
    ("INSERT INTO scraps (hash, body, seen_at) VALUES ('\\x01', 'content', ARRAY[now()])",
     "error: --adopt-seed: scraps rows 1, 2 hold the same body"),
    ("ALTER TABLE scraps ALTER COLUMN id TYPE bigint;"
     "INSERT INTO scraps (id, hash, body, seen_at) VALUES (99999999999, '\\x02', 'b', ARRAY[now()])",
     "error: adopting the seed's table: integer out of range (SQLSTATE 22003): nothing was changed"),
], ids=["same body", "id out of range"])
def test_seed_rows_that_cannot_be_adopted_are_refused_with_one_line(database_url, db, jobs_file, sql, words):
    seed_run(db, "content")
    for statement in sql.split(";"):
        db.run(statement)
    done = command("functions.migrate", "--adopt-seed", "agenda")
    assert done.returncode == 2 and done.stderr.startswith(words), done.stderr
    assert db.run("SELECT to_regclass('scraps_seed')") == [[None]]


def test_unsorted_seed_times_are_adopted_sorted_and_counted(database_url, db, jobs_file):
    seed_run(db, "content", "(now() - interval '5 hours')")
    db.run("INSERT INTO scraps (hash, body, seen_at) VALUES ('\\x01', 'odd', ARRAY[now() - interval '1 hour',"
           " now() - interval '3 hours', now() - interval '2 hours'])")
    assert command("functions.migrate", "--adopt-seed", "agenda").returncode == 0
    times = [row[0] for row in db.run("SELECT unnest(seen_at) FROM scrape_seen s JOIN scrape_contents c"
                                      " ON c.id = s.content_id WHERE c.body = 'odd'")]
    assert times == sorted(times) and len(times) == 3
    report = command("functions.report")
    assert report.returncode == 0 and "4 checks in all" in report.stdout
    assert any(line.split()[1:2] == ["4"] for line in report.stdout.splitlines() if line.startswith("  20")), \
        report.stdout  # all four in the day's row (a search in an unsorted segment found two)


def test_an_sql_error_while_reading_the_report_is_one_line(database_url, db):
    """History a former version adopted (a NULL check time in a segment): one line, exit 1."""
    from shared.app import schema

    schema.ensure(db)
    target = db.run("INSERT INTO scrape_targets (name, url, last_ok_at) VALUES ('x', 'https://e.org', now())"
                    " RETURNING id")[0][0]
    content = db.run("INSERT INTO scrape_contents (target_id, hash, body, checks, first_seen, last_seen)"
                     " VALUES (:t, '\\x01', 'b', 2, now(), now()) RETURNING id", t=target)[0][0]
    db.run("INSERT INTO scrape_seen VALUES (:c, 0, ARRAY[now() - interval '1 hour', NULL, now()])", c=content)
    done = command("functions.report")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: reading the report: ") and "(SQLSTATE 22004)" in done.stderr
    assert done.stderr.count("\n") == 1


# -- a job's absurd timeouts, urlwatch's odd files -----------------------------------------------

@pytest.mark.parametrize("setting", ["time_budget = inf", "read_timeout = nan", "connect_timeout = 1e300"])
def test_absurd_timeouts_are_refused_with_one_line(setting, monkeypatch, capsys):
    """inf overflowed the deadline's timer (a traceback on stderr, no watchdog), nan the socket timeout."""
    from functions import carto_refresh

    monkeypatch.setenv("JOBS_TOML", f'[[refresh]]\nname = "x"\nusername = "demo"\napi_key = "{KEY}"\n{setting}\n'
                                    'sql_api_url = "http://127.0.0.1:9/api/v2/sql"\n')  # loopback, should it run
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert carto_refresh.main(["--time-budget", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: $JOBS_TOML: [[refresh]] job 'x': key ") and err.count("\n") == 1, err


LAUGHS = "".join(f'{a}: &{a} [{", ".join([f"*{b}"] * 10)}]\n' for b, a in zip("abcdef", "bcdefg"))


def test_urlwatch_jobs_with_line_breaks_aliases_and_odd_filters_are_notes(tmp_path, monkeypatch, capsys):
    import tomllib

    from functions import migrate

    urls = tmp_path / "urls.yaml"
    urls.write_text('name: "nl"\nurl: "https://example.org/a"\n? "bad\\nkey"\n: 1\nfilter:\n  - "x\\ny"\n'
                    '---\nname: "laughs"\nurl: "https://example.org/b"\na: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
                    + LAUGHS + "filter:\n  - css: *g\n"
                    '---\nname: "typed"\nurl: "https://example.org/c"\nfilter:\n  - css: [1, 2]\n  - re.sub: 5\n')
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "jobs.toml"))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    assert migrate.main(["--adopt-urlwatch", str(urls)]) == 0
    out = capsys.readouterr().out
    assert [job["name"] for job in tomllib.loads(out)["scrape"]] == ["nl", "typed"]
    assert "# job #2: its YAML (aliases expanded) holds more than 100,000 values: not read, not written," \
           " its history not imported" in out.splitlines()
    assert len(out) < 20_000 and "not mapped" in out


def test_urlwatch_cache_rows_with_times_no_calendar_holds_are_skipped(tmp_path):
    import sqlite3

    from shared.app import urlwatch

    cache = tmp_path / "cache.db"
    con = sqlite3.connect(cache)
    con.execute("CREATE TABLE CacheEntry (id INTEGER PRIMARY KEY, guid TEXT, timestamp, data, tries INTEGER, etag TEXT)")
    con.executemany("INSERT INTO CacheEntry (guid, timestamp, data, tries) VALUES ('g', ?, ?, 0)",
                    [(1e20, "far"), ("soon", "text"), (-1e12, "before"), (1700000000, "good")])
    con.commit()
    con.close()
    (snapshot,) = urlwatch.read_cache(cache).history["g"]
    assert snapshot[1] == "good"
