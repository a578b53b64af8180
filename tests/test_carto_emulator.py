"""The emulator answers as CARTO does: checked with the official SDK (carto-python), an
independent client, and with raw HTTP where the SDK hides the answer."""

import subprocess
import sys
import threading
import time
import warnings

import pytest
import requests

with warnings.catch_warnings():  # carto imports pkg_resources, deprecated in setuptools 80
    warnings.simplefilter("ignore", UserWarning)
    from carto.auth import APIKeyAuthClient
    from carto.exceptions import CartoException, CartoRateLimitException
    from carto.sql import BatchSQLClient, SQLClient

from tests.carto_fixtures import KEY, REGULAR_KEY, ROOT, TOKEN, emulator  # noqa: F401 (fixture)

# The SDK warns about http:// base URLs; the emulator is on loopback.
pytestmark = pytest.mark.filterwarnings("ignore:You are using unencrypted")


def sdk(emu, key=KEY, user="demo"):
    # The SDK finds the user in a /user/NAME/ base URL, as on-premise installs have.
    return APIKeyAuthClient(f"{emu.base_url}/user/{user}/", key)


def post(emu, **form):
    return requests.post(emu.sql_url(), data=form, timeout=10)


def test_success_body_shape_and_field_types(emulator):
    answer = SQLClient(sdk(emulator)).send(
        "SELECT 1 AS n, 2.5::float8 AS f, 'x'::varchar AS s, true AS b, now() AS t, current_date AS d,"
        " ARRAY[1, 2] AS a, NULL::point AS p, NULL::uuid AS u")
    assert list(answer) == ["rows", "time", "fields", "total_rows"]
    assert answer["total_rows"] == 1 and isinstance(answer["time"], float)
    assert {k: v["type"] for k, v in answer["fields"].items()} == {
        "n": "number", "f": "number", "s": "string", "b": "boolean", "t": "date", "d": "date",
        "a": "number[]", "p": "number", "u": "uuid"}  # "point" matches /int/: CARTO's quirk, kept
    assert answer["fields"]["n"]["pgtype"] == "int4"
    assert answer["rows"][0]["n"] == 1 and answer["rows"][0]["a"] == [1, 2]


def test_refresh_function_runs_and_reports_its_value(emulator, db):
    answer = SQLClient(sdk(emulator)).send("SELECT process_data()")
    assert answer["rows"] == [{"process_data": 4}]
    assert answer["fields"]["process_data"] == {"type": "number", "pgtype": "int4"}
    assert db.run("SELECT count(*) FROM bikeways_demand")[0][0] == 4


def test_insert_counts_rows_and_notices_are_grouped(emulator):
    sql = SQLClient(sdk(emulator))
    answer = sql.send("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2)")
    assert answer["rows"] == [] and answer["total_rows"] == 2
    answer = sql.send("DO $$ BEGIN RAISE NOTICE 'one'; RAISE WARNING 'two'; END $$")
    assert answer["notices"] == ["one"] and answer["warnings"] == ["two"]


@pytest.mark.parametrize("form, status, error", [
    ({"q": "SELEC 1", "api_key": KEY}, 400, 'syntax error at or near "SELEC"'),
    ({"api_key": KEY}, 400, "You must indicate a sql query"),
    ({"q": "SELECT 1", "api_key": "not-a-key"}, 401, "Unauthorized"),
    ({"q": "SELECT process_data()", "api_key": REGULAR_KEY}, 403, "permission denied for table bikeways_demand"),
    ({"q": "SELECT * FROM bikeways_input"}, 403, "permission denied for table bikeways_input"),
    ({"q": "SELECT 1", "format": "xml", "api_key": KEY}, 400, "Invalid format: xml"),
])
def test_error_statuses_and_bodies(emulator, form, status, error):
    answer = post(emulator, **form)
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.json()["error"] == [error]
    # The SDK raises on all of them too (its words for 401/403 are its own "Access denied").
    extra = {"format": form["format"]} if "format" in form else {}
    with pytest.raises(CartoException):
        SQLClient(sdk(emulator, key=form.get("api_key"))).send(form.get("q", ""), **extra)


def test_error_carries_hint_and_context(emulator):
    body = post(emulator, q="SELECT process_data(1)", api_key=KEY).json()
    assert body["error"] == ["function process_data(integer) does not exist"]
    assert "explicit type casts" in body["hint"]
    body = post(emulator, q="DO $$ BEGIN PERFORM 1/0; END $$", api_key=KEY).json()
    assert body["error"] == ["division by zero"] and "PL/pgSQL" in body["context"]


def test_unknown_user_is_404(emulator):
    answer = requests.post(f"{emulator.base_url}/user/nobody/api/v2/sql", data={"q": "SELECT 1"}, timeout=10)
    assert answer.status_code == 404
    assert answer.json() == {"error": ["Sorry, we can't find CARTO user 'nobody'. Please check that you have"
                                       " entered the correct domain."]}


def test_basic_auth_and_query_string_key(emulator):
    assert requests.post(emulator.sql_url(), data={"q": "SELECT 1"}, auth=("demo", KEY), timeout=10).status_code == 200
    wrong_user = requests.post(emulator.sql_url(), data={"q": "SELECT 1"}, auth=("eve", KEY), timeout=10)
    assert (wrong_user.status_code, wrong_user.json()) == (403, {"error": ["permission denied"]})
    # The SDK's SQLClient sends the key in the query string (the leak our client avoids).
    SQLClient(sdk(emulator)).send("SELECT 1")
    assert f"api_key={KEY}" in emulator.requests[-1].path


def test_error_after_rows_streamed_keeps_200(emulator):
    answer = post(emulator, q="SELECT 100 / (n - 3) AS r FROM generate_series(1, 5) n", api_key=KEY)
    assert answer.status_code == 200
    body = answer.json()
    assert body["rows"][0] == {"r": -50} and body["error"] == ["division by zero"]
    assert list(body)[:4] == ["rows", "time", "fields", "total_rows"]
    # The SDK does not notice: it hands back the body, error and all.
    assert SQLClient(sdk(emulator)).send("SELECT 100 / (n - 3) FROM generate_series(1, 5) n")["error"]


def test_statement_timeout_is_429_without_retry_after(emulator):
    answer = post(emulator, q="SELECT pg_sleep(2)", api_key=KEY)
    assert answer.status_code == 429 and "Retry-After" not in answer.headers
    assert answer.json() == {
        "error": ["You are over platform's limits: SQL query timeout error. Refactor your query before running"
                  " again or contact CARTO support for more details."],
        "context": "limit", "detail": "datasource"}
    with pytest.raises(CartoException) as raised:  # a plain CartoException for the SDK, no retry info
        SQLClient(sdk(emulator)).send("SELECT pg_sleep(2)")
    assert not isinstance(raised.value, CartoRateLimitException)


def test_rate_limit_answers_429_with_retry_after_and_headers(emulator):
    emulator.set_rate_limit(2, window_s=30)
    first = post(emulator, q="SELECT 1", api_key=KEY)
    assert first.headers["Carto-Rate-Limit-Limit"] == "2" and first.headers["Carto-Rate-Limit-Remaining"] == "1"
    client = SQLClient(sdk(emulator))
    client.send("SELECT 1")
    with pytest.raises(CartoRateLimitException) as raised:
        client.send("SELECT 1")
    assert (raised.value.limit, raised.value.remaining) == (2, 0)
    assert 1 <= raised.value.retry_after <= 30
    body = post(emulator, q="SELECT 1", api_key=KEY).json()
    assert body == {"error": ["You are over platform's limits. Please contact us to know more details"],
                    "context": "limit", "detail": "rate-limit"}


def test_batch_job_done_with_the_sdk(emulator, db):
    batch = BatchSQLClient(sdk(emulator))
    job = batch.create("SELECT process_data()")
    assert job["status"] == "pending" and job["user"] == "demo" and len(job["job_id"]) == 36
    assert job["created_at"].endswith("Z") and "." in job["created_at"]
    while job["status"] in ("pending", "running"):
        time.sleep(0.02)
        job = batch.read(job["job_id"])
    assert job["status"] == "done"
    assert db.run("SELECT count(*) FROM bikeways_demand")[0][0] == 4


def test_batch_job_failed_reports_reason(emulator):
    batch = BatchSQLClient(sdk(emulator))
    job = batch.create(["SELECT 1", "SELECT * FROM missing_table"])
    while job["status"] in ("pending", "running"):
        time.sleep(0.02)
        job = batch.read(job["job_id"])
    assert job["status"] == "failed"
    assert job["failed_reason"] == 'relation "missing_table" does not exist'


def test_batch_job_cancel_running_and_finished(emulator):
    batch = BatchSQLClient(sdk(emulator))
    job = batch.create("SELECT pg_sleep(30)")
    while batch.read(job["job_id"])["status"] != "running":
        time.sleep(0.02)
    started = time.monotonic()
    assert batch.cancel(job["job_id"]) == "cancelled"
    assert batch.read(job["job_id"])["status"] == "cancelled"
    # The PostgreSQL backend was really cancelled: the worker is free for the next job at once.
    nxt = batch.create("SELECT 1")
    while batch.read(nxt["job_id"])["status"] != "done":
        time.sleep(0.02)
    assert time.monotonic() - started < 5
    answer = requests.delete(f"{emulator.sql_url()}/job/{nxt['job_id']}", auth=("demo", KEY), timeout=10)
    assert (answer.status_code, answer.json()) == (400, {"error": ["Cannot set status from done to cancelled"]})
    assert batch.cancel(nxt["job_id"]) == "done"  # the SDK's own reading of that answer


def test_batch_needs_master_key_and_valid_sql(emulator):
    answer = requests.post(f"{emulator.sql_url()}/job", json={"query": "SELECT 1", "api_key": REGULAR_KEY}, timeout=10)
    assert (answer.status_code, answer.json()) == (403, {"error": ["permission denied"]})
    answer = requests.post(f"{emulator.sql_url()}/job", json={"query": "", "api_key": KEY}, timeout=10)
    assert (answer.status_code, answer.json()) == (400, {"error": ["You must indicate a valid SQL"]})


def test_finished_job_expires_to_400_not_found(emulator):
    emulator.job_ttl = 0.05
    batch = BatchSQLClient(sdk(emulator))
    job = batch.create("SELECT 1")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = requests.get(f"{emulator.sql_url()}/job/{job['job_id']}", auth=("demo", KEY), timeout=10)
        if answer.status_code == 400:
            break
        time.sleep(0.02)
    assert answer.json() == {"error": [f"Job with id {job['job_id']} not found"]}


def test_concurrent_requests_are_served(emulator, monkeypatch):
    monkeypatch.setattr(emulator, "statement_timeout_ms", 5000)  # the fixture's 0.3 s would cut pg_sleep(1)
    results = []

    def one():
        results.append(post(emulator, q="SELECT pg_sleep(1)", api_key=KEY).status_code)

    threads = [threading.Thread(target=one) for _ in range(5)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 5 and time.monotonic() - started < 4  # one after another: 5 s


# -- CARTO 3 (v3): shapes as CARTO's docs show them; no official SDK to drive it --------------

def v3(emu, method, path, token=TOKEN, **kwargs):
    return requests.request(method, f"{emu.v3_url()}{path}", headers={"Authorization": f"Bearer {token}"},
                            timeout=kwargs.pop("timeout", 10), **kwargs)


def test_v3_query_answers_rows_schema_meta(emulator):
    answer = v3(emulator, "POST", "/query", json={"q": "SELECT 1 AS n, 'x'::text AS s"})
    assert answer.status_code == 200
    body = answer.json()
    assert list(body) == ["rows", "schema", "meta"]
    assert body["rows"] == [{"n": 1, "s": "x"}]
    assert body["schema"] == [{"name": "n", "type": "int4"}, {"name": "s", "type": "text"}]
    assert isinstance(body["meta"], dict)
    assert v3(emulator, "GET", "/query", params={"q": "SELECT 2 AS n"}).json()["rows"] == [{"n": 2}]


@pytest.mark.parametrize("request_args, status, error", [
    ({"json": {"q": "SELECT process_data(1)"}}, 400, "function process_data(integer) does not exist"),
    ({"json": {}}, 400, "You must indicate a sql query"),
    ({"json": {"q": "SELECT 1"}, "token": "not-a-token"}, 401, "Unauthorized"),
])
def test_v3_errors_are_a_string_with_maybe_a_hint(emulator, request_args, status, error):
    answer = v3(emulator, "POST", "/query", **request_args)
    assert answer.status_code == status and answer.json()["error"] == error
    assert set(answer.json()) <= {"error", "hint"}
    if status == 400 and "function" in error:
        assert "explicit type casts" in answer.json()["hint"]


def test_v3_job_has_job_id_status_and_a_different_external_id(emulator, db):
    answer = v3(emulator, "POST", "/job", json={"query": "SELECT pg_sleep(0.2), process_data()"})
    assert answer.status_code == 200
    created = answer.json()
    assert created["status"] == "pending" and created["jobId"] and created["externalId"]
    assert created["externalId"] != created["jobId"]
    assert v3(emulator, "GET", f"/job/{created['externalId']}").status_code == 404
    deadline, job = time.monotonic() + 5, created
    while job["status"] in ("pending", "running") and time.monotonic() < deadline:
        time.sleep(0.02)
        job = v3(emulator, "GET", f"/job/{created['jobId']}").json()
    assert (job["jobId"], job["externalId"], job["status"]) == (created["jobId"], created["externalId"], "done")
    assert db.run("SELECT count(*) FROM bikeways_demand")[0][0] == 4


def test_v3_job_failed_and_cancelled(emulator):
    failed = v3(emulator, "POST", "/job", json={"query": "SELECT * FROM missing_table"}).json()
    running = v3(emulator, "POST", "/job", json={"query": "SELECT pg_sleep(30)"}).json()
    deadline = time.monotonic() + 5
    while v3(emulator, "GET", f"/job/{running['jobId']}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    job = v3(emulator, "GET", f"/job/{failed['jobId']}").json()
    assert job["status"] == "failed" and job["error"] == 'relation "missing_table" does not exist'
    assert v3(emulator, "DELETE", f"/job/{running['jobId']}").json()["status"] == "cancelled"
    again = v3(emulator, "DELETE", f"/job/{running['jobId']}")
    assert (again.status_code, again.json()) == (400, {"error": "Cannot set status from cancelled to cancelled"})


def test_v3_jobs_are_not_v2_jobs(emulator):
    created = v3(emulator, "POST", "/job", json={"query": "SELECT 1"}).json()
    answer = requests.get(f"{emulator.sql_url()}/job/{created['jobId']}", auth=("demo", KEY), timeout=10)
    assert answer.status_code == 400  # v2's "not found"


def test_v3_sync_limit_answers_504(emulator):
    emulator.set_v3_sync_limit(0.2)
    started = time.monotonic()
    answer = v3(emulator, "POST", "/query", json={"q": "SELECT pg_sleep(20)"})
    assert time.monotonic() - started < 10  # cut at the limit, not after the statement's 20 s
    assert (answer.status_code, answer.text) == (504, "upstream request timeout")
    assert answer.headers["Content-Type"].startswith("text/plain")
    # Under the limit all is as before, and v2's limit (statement_timeout_ms, 0.3 s here) is not v3's.
    emulator.set_v3_sync_limit(2)
    assert v3(emulator, "POST", "/query", json={"q": "SELECT 1 AS n FROM pg_sleep(0.4)"}).json()["rows"] == [{"n": 1}]


def test_v3_sync_limit_answers_an_error_saying_timed_out(emulator):
    emulator.set_v3_sync_limit(0.2, answer="error")
    answer = v3(emulator, "POST", "/query", json={"q": "SELECT pg_sleep(2)"})
    assert answer.status_code == 400
    assert "timed out" in answer.json()["error"] and "job" in answer.json()["hint"]


def test_v3_sync_limit_without_an_answer(emulator):
    emulator.set_v3_sync_limit(0.2, answer="none")
    with pytest.raises(requests.ReadTimeout):
        v3(emulator, "POST", "/query", json={"q": "SELECT pg_sleep(2)"}, timeout=(5, 1))
    assert v3(emulator, "POST", "/query", json={"q": "SELECT 1 AS n"}).json()["rows"] == [{"n": 1}]


def test_v3_sync_limit_setting_is_checked(emulator):
    with pytest.raises(ValueError):
        emulator.set_v3_sync_limit(1, answer="502")
    with pytest.raises(ValueError):
        emulator.set_v3_sync_limit(0)


def test_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "devtools.carto_emulator", "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and "--statement-timeout-ms" in done.stdout
