"""Our CARTO client against the emulator (real PostgreSQL, real HTTP on loopback) and, for
failures the emulator cannot produce (5xx, dead ports), small loopback servers."""

import logging
import socket
import threading
import time

import pytest
import requests
from werkzeug import Response

from shared.refresh import carto
from shared.refresh.job import RefreshJob
from tests.carto_fixtures import FAST, KEY, REGULAR_KEY, TOKEN, emulator  # noqa: F401 (fixture)


def job_for(emu, **keys) -> RefreshJob:
    return RefreshJob(**{"name": "bikeways", "api_key": KEY, "sql_api_url": emu.sql_url(), **keys})


def run(job, budget=10.0, timing=FAST):
    return carto.refresh(job, time.monotonic() + budget, timing=timing)


def failure(job, budget=10.0, timing=FAST) -> carto.CartoError:
    with pytest.raises(carto.CartoError) as raised:
        run(job, budget, timing)
    return raised.value


def test_success_rebuilds_the_aggregate(emulator, db):
    outcome = run(job_for(emulator))
    assert outcome.via == "SQL API" and outcome.value == "process_data = 4"
    assert outcome.summary().startswith("done via SQL API in ")
    assert db.run("SELECT segment, suggestions FROM bikeways_demand ORDER BY suggestions DESC LIMIT 1") == [
        ["Massachusetts Ave: Harvard Sq to Central Sq", 3]]


def test_post_with_key_in_the_body_never_the_url(emulator):
    run(job_for(emulator))
    (sent,) = emulator.requests
    assert sent.method == "POST" and sent.path == "/user/demo/api/v2/sql"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert f"api_key={KEY}".encode() in sent.body and b"q=SELECT+process_data%28%29" in sent.body


@pytest.mark.parametrize("keys, status, words", [
    ({"api_key": "sk-wrong-key-000"}, 401, "HTTP 401 (API key rejected): Unauthorized"),
    ({"api_key": REGULAR_KEY}, 403, "HTTP 403 (permission denied): permission denied for table bikeways_demand"),
    ({"sql": "SELEC process_data()"}, 400, 'HTTP 400: syntax error at or near "SELEC"'),
    ({"sql": "SELECT process_data(1)"}, 400, "HTTP 400: function process_data(integer) does not exist (hint: No"),
])
def test_each_error_fails_at_once_with_carto_words(emulator, keys, status, words):
    error = failure(job_for(emulator, **keys))
    assert error.status == status and error.reason.startswith(words)
    assert str(error).startswith("bikeways: HTTP")
    assert len(emulator.requests) == 1  # a 4xx that cannot succeed is never retried


def test_unknown_user_is_404(emulator):
    error = failure(job_for(emulator, sql_api_url=emulator.sql_url("nobody")))
    assert error.status == 404 and "can't find CARTO user 'nobody'" in error.reason


def test_200_with_error_is_a_failure(emulator):
    error = failure(job_for(emulator, sql="SELECT 100 / (n - 3) FROM generate_series(1, 5) n"))
    assert error.reason == "HTTP 200 (failed after rows had streamed): division by zero"


def test_rate_limited_then_success(emulator):
    emulator.set_rate_limit(1, window_s=1.0)
    requests.post(emulator.sql_url(), data={"q": "SELECT 1", "api_key": KEY}, timeout=10)  # uses the window up
    started = time.monotonic()
    outcome = run(job_for(emulator))
    assert outcome.value == "process_data = 4"
    assert [r.method for r in emulator.requests] == ["POST"] * 3  # theirs, our 429, our retry
    assert time.monotonic() - started >= 0.5  # waited as Retry-After asked, not the tiny backoff


def test_retry_after_beyond_the_budget_gives_up_at_once(emulator):
    emulator.set_rate_limit(1, window_s=60)
    requests.post(emulator.sql_url(), data={"q": "SELECT 1", "api_key": KEY}, timeout=10)
    started = time.monotonic()
    error = failure(job_for(emulator), budget=30)
    assert time.monotonic() - started < 10  # not the 30 s budget, let alone the 60 s CARTO asks for
    assert "gave up after 1 tries" in error.reason and "rate limited (HTTP 429), CARTO asks to wait" in error.reason
    assert error.reason.endswith(", longer than the time budget allows")


def test_statement_timeout_falls_back_to_a_batch_job_that_ends_done(emulator, db):
    job = job_for(emulator, sql="SELECT pg_sleep(0.5), process_data()")
    outcome = run(job)
    assert outcome.via.startswith("batch job ") and outcome.note == "statement timeout, moved to the Batch API"
    assert db.run("SELECT count(*) FROM bikeways_demand")[0][0] == 4
    sync, create, *polls = emulator.requests
    assert (sync.method, create.method, create.path) == ("POST", "POST", "/user/demo/api/v2/sql/job")
    assert polls and all(p.method == "GET" and p.headers["Authorization"].startswith("Basic ") for p in polls)
    assert all(KEY not in p.path for p in emulator.requests)


def test_statement_timeout_then_batch_job_failed(emulator):
    # Two statements run whole: the first outlasts the sync limit, the second fails in the job.
    error = failure(job_for(emulator, sql="SELECT pg_sleep(0.5); SELECT * FROM missing_table"))
    assert error.reason.startswith("batch job ") and error.reason.endswith(
        'failed: relation "missing_table" does not exist')


def test_statement_timeout_then_batch_job_cancelled(emulator):
    def cancel_when_running():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            running = [j for j in list(emulator.jobs.values()) if j.status == "running"]
            if running:
                requests.delete(f"{emulator.sql_url()}/job/{running[0].job_id}", auth=("demo", KEY), timeout=10)
                return
            time.sleep(0.02)

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    error = failure(job_for(emulator, sql="SELECT pg_sleep(10)"))
    canceller.join()
    assert error.reason.endswith("was cancelled before it finished")


def test_expired_job_is_reported_as_unknown_outcome(emulator):
    emulator.job_ttl = 0.01
    slow_polls = carto.Timing(backoff_initial=0.01, backoff_max=0.05, poll_initial=0.3)
    error = failure(job_for(emulator, sql="SELECT 1", always_batch=True), timing=slow_polls)
    assert error.status == 400 and "is gone (CARTO forgets finished jobs after 2 hours)" in error.reason


def test_always_batch_skips_the_synchronous_call(emulator, db):
    outcome = run(job_for(emulator, always_batch=True))
    assert outcome.note == "always_batch"
    assert emulator.requests[0].path == "/user/demo/api/v2/sql/job"
    assert b'"api_key"' in emulator.requests[0].body  # JSON body, as carto-python sends it
    assert db.run("SELECT count(*) FROM bikeways_demand")[0][0] == 4


def test_batch_job_still_running_when_budget_ends(emulator):
    error = failure(job_for(emulator, sql="SELECT pg_sleep(3)", always_batch=True), budget=0.6)
    assert "still running when the time budget ran out; it was left running" in error.reason


def test_key_never_in_url_log_or_error(emulator, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    run(job_for(emulator))
    run(job_for(emulator, sql="SELECT pg_sleep(0.5)"))  # sync, timeout, batch create, polls
    failure(job_for(emulator, sql="SELEC 1"))
    wrong = "sk-wrong-key-7e6d5c4b"
    error = failure(job_for(emulator, api_key=wrong))
    out, err = capsys.readouterr()
    for secret in (KEY, wrong):
        assert all(secret not in r.path for r in emulator.requests)
        assert secret not in caplog.text and secret not in out + err and secret not in str(error)
    assert any(KEY.encode() in r.body for r in emulator.requests)  # it was sent, in bodies


def test_carto3_query_and_job_with_bearer_token(emulator, db):
    job = RefreshJob(name="v3", mode="carto3", base_url=emulator.base_url, connection="carto_dw", api_key=TOKEN)
    assert run(job).value == "process_data = 4"
    assert run(RefreshJob(**{**job.__dict__, "always_batch": True})).via.startswith("batch job ")
    paths = [r.path for r in emulator.requests]
    assert paths[:2] == ["/v3/sql/carto_dw/query", "/v3/sql/carto_dw/job"]
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in emulator.requests)
    assert all(TOKEN not in p for p in paths)
    error = failure(RefreshJob(**{**job.__dict__, "api_key": "bad-token-123"}))
    assert error.status == 401 and error.reason == "HTTP 401 (API key rejected): Unauthorized"


def v3_job(emu, **keys) -> RefreshJob:
    return RefreshJob(**{"name": "v3", "mode": "carto3", "base_url": emu.base_url, "connection": "carto_dw",
                         "api_key": TOKEN, **keys})


def test_carto3_job_is_polled_by_job_id_never_external_id(emulator, db):
    outcome = run(v3_job(emulator, sql="SELECT pg_sleep(0.3), process_data()", always_batch=True))
    (job,) = emulator.jobs.values()
    assert job.external_id != job.job_id and outcome.via == f"batch job {job.job_id}"
    create, *polls = emulator.requests
    assert (create.method, create.path) == ("POST", "/v3/sql/carto_dw/job")
    assert polls and all((p.method, p.path) == ("GET", f"/v3/sql/carto_dw/job/{job.job_id}") for p in polls)
    assert db.run("SELECT count(*) FROM bikeways_demand")[0][0] == 4
    # What a client polling with externalId would have got:
    answer = requests.get(f"{emulator.v3_url()}/job/{job.external_id}", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=10)
    assert answer.status_code == 404


def test_carto3_failed_job_reports_carto_error(emulator):
    error = failure(v3_job(emulator, sql="SELECT * FROM missing_table", always_batch=True))
    assert error.reason.startswith("batch job ") and error.reason.endswith(
        'failed: relation "missing_table" does not exist')


@pytest.mark.parametrize("answer, read_timeout", [("504", 60.0), ("error", 60.0), ("none", 0.3)])
def test_carto3_sync_query_past_the_limit_runs_as_a_job(emulator, db, caplog, answer, read_timeout):
    """However CARTO 3's one-minute limit shows (a 504, an error saying it timed out, or no
    answer before our read timeout), the statement runs once more, as a job, not synchronously."""
    emulator.set_v3_sync_limit(0.3, answer=answer)
    started = time.monotonic()
    outcome = run(v3_job(emulator, sql="SELECT pg_sleep(0.5), process_data()", read_timeout=read_timeout))
    assert time.monotonic() - started < 5
    assert outcome.via.startswith("batch job ") and outcome.note == "synchronous query timed out, moved to a job"
    assert outcome.summary().endswith("(synchronous query timed out, moved to a job)")
    assert db.run("SELECT count(*) FROM bikeways_demand")[0][0] == 4
    sync, create, *polls = emulator.requests
    assert [(r.method, r.path) for r in (sync, create)] == [("POST", "/v3/sql/carto_dw/query"),
                                                          ("POST", "/v3/sql/carto_dw/job")]
    assert polls and all(p.method == "GET" for p in polls)  # the sync call was not retried
    assert "running it as a job instead" in caplog.text and TOKEN not in caplog.text


def test_carto3_sync_read_timeout_is_read_timeout_plus_a_margin(emulator):
    # 0.4 s is past read_timeout (0.3) but within it plus the margin: the answer is awaited.
    emulator.set_v3_sync_limit(5)
    margin = carto.Timing(**{**FAST.__dict__, "v3_sync_margin": 1.0})
    outcome = run(v3_job(emulator, sql="SELECT pg_sleep(0.4), process_data()", read_timeout=0.3), timing=margin)
    assert outcome.via == "SQL API" and len(emulator.requests) == 1


# -- failures the emulator does not produce --------------------------------------------------

def test_5xx_is_retried_with_backoff_then_succeeds(httpserver):
    answers = [Response("<html>Bad gateway</html>", status=502), Response('{"error":["busy"]}', status=503,
                                                                             content_type="application/json"),
               Response("upstream request timeout", status=504)]  # v2: a 504 is retried like any 5xx

    def handler(request):
        if answers:
            return answers.pop(0)
        return Response('{"rows":[{"process_data":1}],"time":0.1,"fields":{},"total_rows":1}',
                        content_type="application/json")

    httpserver.expect_request("/api/v2/sql", method="POST").respond_with_handler(handler)
    job = RefreshJob(name="j", api_key=KEY, username="demo", sql_api_url=httpserver.url_for("/api/v2/sql"))
    assert run(job).value == "process_data = 1"
    assert len(httpserver.log) == 4


def test_carto3_5xx_without_timeout_is_retried_synchronously(httpserver):
    answers = [Response("<html>Bad gateway</html>", status=502),
               Response('{"error":"backend busy"}', status=503, content_type="application/json")]

    def handler(request):
        if answers:
            return answers.pop(0)
        return Response('{"rows":[{"process_data":1}],"schema":[{"name":"process_data","type":"int4"}],"meta":{}}',
                        content_type="application/json")

    httpserver.expect_request("/v3/sql/dw/query", method="POST").respond_with_handler(handler)
    job = RefreshJob(name="j", mode="carto3", base_url=httpserver.url_for("/"), connection="dw", api_key=TOKEN)
    outcome = run(job)
    assert (outcome.via, outcome.value) == ("SQL API", "process_data = 1") and len(httpserver.log) == 3


def test_carto3_5xx_saying_timed_out_runs_as_a_job(httpserver):
    httpserver.expect_oneshot_request("/v3/sql/dw/query", method="POST").respond_with_json(
        {"error": "Query execution timed out"}, status=500)
    httpserver.expect_oneshot_request("/v3/sql/dw/job", method="POST").respond_with_json(
        {"jobId": "j-1", "externalId": "bq-job-9", "status": "pending"})
    httpserver.expect_oneshot_request("/v3/sql/dw/job/j-1", method="GET").respond_with_json(
        {"jobId": "j-1", "externalId": "bq-job-9", "status": "success"})
    job = RefreshJob(name="j", mode="carto3", base_url=httpserver.url_for("/"), connection="dw", api_key=TOKEN)
    outcome = run(job)
    assert (outcome.via, outcome.note) == ("batch job j-1", "synchronous query timed out, moved to a job")
    assert [r.path for r, _ in httpserver.log] == ["/v3/sql/dw/query", "/v3/sql/dw/job", "/v3/sql/dw/job/j-1"]


def test_persistent_5xx_gives_up_within_the_budget(httpserver):
    httpserver.expect_request("/api/v2/sql").respond_with_data("<html>oops</html>", status=500)
    job = RefreshJob(name="j", api_key=KEY, username="demo", sql_api_url=httpserver.url_for("/api/v2/sql"))
    started = time.monotonic()
    error = failure(job, budget=0.5)
    assert time.monotonic() - started < 5.5  # the budget, with slack for a loaded machine
    assert "gave up after" in error.reason and "HTTP 500" in error.reason and "not JSON" in error.reason


def test_network_error_is_retried_until_the_budget_ends():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    job = RefreshJob(name="j", api_key=KEY, username="demo", sql_api_url=f"http://127.0.0.1:{port}/api/v2/sql")
    error = failure(job, budget=0.5)
    assert "gave up after" in error.reason and "connection refused" in error.reason
    assert error.status is None


def test_read_timeout_is_retried(httpserver):
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.6)
        return Response('{"rows":[],"time":0,"fields":{},"total_rows":0}', content_type="application/json")

    httpserver.expect_request("/api/v2/sql").respond_with_handler(handler)
    job = RefreshJob(name="j", api_key=KEY, username="demo", read_timeout=0.3,
                     sql_api_url=httpserver.url_for("/api/v2/sql"))
    assert run(job).total_rows == 0 and len(calls) == 2
