"""Refresh runs recorded in PostgreSQL: one row per run, redelivered events as duplicates that
call CARTO no more, and the same alerts and recovery messages as scrape's, delivered for real
to a webhook on loopback. CARTO is the loopback emulator over this test's database."""

import json
import logging
import os
import socket
import threading
import time

import pytest
from werkzeug import Response

from functions import carto_refresh
from shared.app import entry
from tests.carto_fixtures import FAST, KEY, emulator, v2_job  # noqa: F401 (fixture)
from tests import runs as test_runs

GENEROUS = 15.0  # seconds: far below what the broken code took (30 s and more), far above the work

CALLS = "CREATE TABLE IF NOT EXISTS calls (at timestamptz DEFAULT now()); INSERT INTO calls DEFAULT VALUES"


@pytest.fixture
def webhook(httpserver):
    """A JSON webhook (Apprise's json://) keeping what it receives."""
    received = []

    def hook(request):
        received.append(json.loads(request.get_data()))
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    return f"json://127.0.0.1:{httpserver.port}/hook", received


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    from shared.refresh import run
    monkeypatch.setattr(run.carto, "Timing", lambda: FAST)


def job(emu, name="nightly", sql=CALLS, **keys) -> str:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    return f'[[refresh]]\nname = "{name}"\nsql = "{sql}"\nsql_api_url = "{emu.sql_url()}"\napi_key = "{KEY}"\n{extra}'


def runs(db) -> list:
    return db.run("SELECT j.name, r.run_key, r.outcome, r.via, r.rows, r.error, r.attempts,"
                  " r.started_at <= r.ended_at FROM refresh_runs r JOIN refresh_jobs j ON j.id = r.job_id"
                  " ORDER BY r.id")


def test_each_run_is_recorded_and_a_redelivered_event_calls_carto_once(emulator, jobs_file, db):
    jobs_file(job(emulator))
    event = {"job": "nightly", "scheduled_time": "2026-11-22T04:00:00Z"}
    first = carto_refresh.handler(event, None)
    again = carto_refresh.handler(event, None)  # EventBridge's at-least-once delivery
    assert [r["outcome"] for r in first["results"]] == ["ok"]
    assert again["results"][0]["outcome"] == "duplicate"
    assert "run 2026-11-22T04:00:00Z already done" in again["results"][0]["reason"]
    assert db.run("SELECT count(*) FROM calls")[0][0] == 1
    assert runs(db) == [["nightly", "2026-11-22T04:00:00Z", "ok", "SQL API", 1, None, 1, True]]
    # A manual run has no key: it always runs, and is recorded too.
    assert carto_refresh.main([]) == 0
    assert db.run("SELECT count(*) FROM calls")[0][0] == 2
    assert [r[1:3] for r in runs(db)] == [["2026-11-22T04:00:00Z", "ok"], [None, "ok"]]


def test_a_failed_run_is_retried_under_its_key_without_counting_twice(emulator, jobs_file, db):
    jobs_file(job(emulator, sql="SELECT no_such_function()"))
    event = {"job": "nightly", "scheduled_time": "2026-11-22T04:00:00Z"}
    for _ in range(2):  # the run, then Lambda's retry of the same event
        with pytest.raises(entry.RunFailed, match="nightly: error: HTTP 400: function no_such_function"):
            carto_refresh.handler(event, None)
    assert [r[2:7] for r in runs(db)] == [["error", None, None, "HTTP 400: function no_such_function() does not exist"
                                           " (hint: No function matches the given name and argument types."
                                           " You might need to add explicit type casts.)", 2]]
    assert db.run("SELECT error_streak FROM refresh_jobs")[0][0] == 1
    jobs_file(job(emulator))  # fixed: the next delivery of the same run succeeds
    assert carto_refresh.handler(event, None)["results"][0]["outcome"] == "ok"
    assert [r[2:7] for r in runs(db)] == [["ok", "SQL API", 1, None, 3]]
    assert db.run("SELECT error_streak, last_ok_at IS NOT NULL FROM refresh_jobs")[0] == [0, True]


def test_one_alert_after_alert_after_failures_then_one_recovery(emulator, jobs_file, webhook, db):
    url, received = webhook
    jobs_file(job(emulator, sql="SELECT no_such_function()", notify=[url], alert_after=2))
    codes = [carto_refresh.main(["--run-key", f"day-{day}"]) for day in (1, 2, 3, 4)]
    assert codes == [1, 1, 1, 1]
    assert [(m["title"], m["type"]) for m in received] == [("nightly is failing", "failure")]
    assert "the last 2 runs failed" in received[0]["message"]
    assert "Last error: HTTP 400: function no_such_function() does not exist" in received[0]["message"]
    assert emulator.sql_url() in received[0]["message"]  # where it runs, so the reader knows which
    jobs_file(job(emulator, notify=[url], alert_after=2))
    assert carto_refresh.main(["--run-key", "day-5"]) == 0
    assert carto_refresh.main(["--run-key", "day-6"]) == 0
    assert [(m["title"], m["type"]) for m in received] == [("nightly is failing", "failure"),
                                                           ("nightly recovered", "success")]
    assert "recovered after 4 failed runs" in received[1]["message"]
    assert all(KEY not in json.dumps(m) for m in received)


def test_notify_defaults_to_notify_urls_and_can_be_silenced(emulator, jobs_file, webhook, monkeypatch, db):
    url, received = webhook
    monkeypatch.setenv("NOTIFY_URLS", url)
    jobs_file(job(emulator, sql="SELECT no_such_function()", alert_after=1)
              + job(emulator, name="quiet", sql="SELECT no_such_function()", alert_after=1, notify=[]))
    assert carto_refresh.main(["--run-key", "k1"]) == 1
    assert [m["title"] for m in received] == ["nightly is failing"]


def test_without_a_database_refresh_runs_says_once_that_history_is_off(emulator, jobs_file, webhook,
                                                                      monkeypatch, caplog):
    url, received = webhook
    jobs_file(job(emulator, sql="SELECT 1") + job(emulator, name="broken", sql="SELECT no_such_function()",
                                                  notify=[url]))
    monkeypatch.delenv("DATABASE_URL")
    from shared.refresh import run
    monkeypatch.setattr(run, "_said_history_is_off", False)
    with caplog.at_level(logging.WARNING):
        assert carto_refresh.main([]) == 1
        assert carto_refresh.main([]) == 1
    said = [r for r in caplog.records if "refresh history is off" in r.getMessage()]
    assert len(said) == 1
    # No streak to count without history: each failure alerts.
    assert [m["title"] for m in received] == ["broken is failing", "broken is failing"]


def test_an_unreachable_history_database_does_not_stop_the_refresh(emulator, jobs_file, monkeypatch, capsys):
    jobs_file(job(emulator, sql="SELECT 1"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:pw-secret-4242@127.0.0.1:1/none")
    assert carto_refresh.main(["--run-key", "k1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nightly: ok: done via SQL API") and "(history not recorded: cannot connect" in out
    assert "pw-secret-4242" not in out


def test_postgres_mode_records_via_and_rows(database_url, jobs_file, db):
    db.run("CREATE TABLE t (x int)")
    jobs_file('[[refresh]]\nname = "pg"\nmode = "postgres"\nsql = "INSERT INTO t SELECT generate_series(1, 3)"\n')
    assert carto_refresh.main(["--run-key", "k"]) == 0
    assert [r[2:6] for r in runs(db)] == [["ok", "PostgreSQL", 3, None]]


# --- a history database that never answers, two deliveries at once, one going away ---

def ok_answer(request):
    return Response('{"rows":[{"process_data":4}],"total_rows":1}', content_type="application/json")


def test_a_history_database_that_never_answers_does_not_hold_the_refresh(httpserver, silent, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:pw@127.0.0.1:{silent.port}/db?sslmode=disable")
    monkeypatch.setenv("NOTIFY_URLS", "")
    httpserver.expect_request("/api/v2/sql").respond_with_handler(ok_answer)
    started = time.monotonic()
    (result,) = test_runs.refresh([v2_job(httpserver.url_for("/api/v2/sql"), time_budget=20)], run_key="k", timing=FAST)
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
    threads = [threading.Thread(target=lambda: results.extend(test_runs.refresh([job], run_key="same", timing=FAST)))
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
    (result,) = test_runs.refresh([v2_job(httpserver.url_for("/api/v2/sql"))], run_key="k1", timing=FAST)
    assert (result.outcome, result.reason) == ("error", "HTTP 400: boom")
    assert result.notice.startswith("history not recorded: cannot connect to") and "pw" not in result.notice
    assert db.run("SELECT outcome FROM refresh_runs") == [["running"]]  # claimed, never finished
