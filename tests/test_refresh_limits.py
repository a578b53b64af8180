"""A refresh's limits hold whatever the server does: its time budget bounds the whole exchange
(an answer that trickles in included), its memory does not grow with the answer (rows are
counted, not kept), and CARTO's odd answers get true reasons (an empty 200, Retry-After: 0 or
absurdly long). Real loopback servers and the real PostgreSQL of the tests; no timing assertion
that a slow machine could fail (only generous upper bounds, and lower bounds on waits)."""

import json
import socket
import ssl
import threading
import time
import tracemalloc

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug import Response

from shared.refresh import answer as carto_answer
from shared.refresh import carto, postgres
from shared.refresh.job import RefreshJob
from shared.refresh.outcome import Outcome
from shared.refresh import run as refresh_run
from tests import runs
from tests.loopback import SlowHandshake
from tests.carto_fixtures import FAST, KEY, TOKEN, emulator  # noqa: F401 (fixture)

GENEROUS = 20.0  # seconds: "well before" the minute a trickle would take, even on a loaded machine


def v2_job(url: str, **keys) -> RefreshJob:
    return RefreshJob(**{"name": "j", "api_key": KEY, "username": "demo", "sql_api_url": url, **keys})


def refresh(job, budget=10.0):
    return carto.refresh(job, time.monotonic() + budget, timing=FAST)


def failure(job, budget=10.0) -> carto.CartoError:
    with pytest.raises(carto.CartoError) as raised:
        refresh(job, budget)
    return raised.value


class RawServer:
    """A loopback server that answers every connection with `script(conn)`: for what no HTTP
    framework sends (headers a byte at a time). With `tls`, an SSLContext, it speaks HTTPS."""

    def __init__(self, script, tls: ssl.SSLContext | None = None):
        self.script, self.stop, self.tls = script, threading.Event(), tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.sock.getsockname()[1]}/api/v2/sql"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                conn.recv(65536)
                self.script(conn, self.stop)
        except OSError:  # the client went away: what the tests want
            pass

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.fixture
def raw_server():
    servers = []

    def start(script, tls=None):
        servers.append(RawServer(script, tls))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


# -- the time budget bounds the whole exchange ------------------------------------------------

@pytest.mark.parametrize("mode", ["carto", "carto3"])
def test_an_answer_that_trickles_in_ends_at_the_time_budget(emulator, mode):
    """A byte every 0.3 s: each read is far within the read timeout, the whole answer (over 100
    bytes) would take over half a minute; a 2 s budget ends it, as an error saying so."""
    emulator.set_trickle(1, 0.3)
    if mode == "carto":
        job = RefreshJob(name="j", api_key=KEY, sql_api_url=emulator.sql_url(), read_timeout=5)
    else:
        job = RefreshJob(name="j", mode="carto3", base_url=emulator.base_url, connection="dw", api_key=TOKEN,
                         read_timeout=5)
    started = time.monotonic()
    error = failure(job, budget=2)
    assert time.monotonic() - started < GENEROUS
    assert "the answer was still arriving when the time budget ran out (" in error.reason
    assert "bytes in" in error.reason and error.reason.startswith("gave up after 1 tries")


def test_headers_that_trickle_in_end_at_the_time_budget(raw_server):
    def script(conn, stop):
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 1000:
            if stop.wait(0.2):
                return
            conn.sendall(bytes([byte]))

    server = raw_server(script)
    started = time.monotonic()
    error = failure(v2_job(server.url, read_timeout=5), budget=2)
    assert time.monotonic() - started < GENEROUS
    assert "the statement: no complete answer when the time budget ran out" in error.reason


def test_a_chunked_answer_that_trickles_ends_at_the_time_budget(raw_server):
    """HTTP/1.1 chunked encoding, one tiny chunk at a time, never the last."""
    def script(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"9\r\n{\"rows\":[\r\n")
        while not stop.wait(0.2):
            conn.sendall(b"2\r\n1,\r\n")

    server = raw_server(script)
    started = time.monotonic()
    error = failure(v2_job(server.url, read_timeout=5), budget=2)
    assert time.monotonic() - started < GENEROUS
    assert "the answer was still arriving when the time budget ran out" in error.reason


@pytest.mark.parametrize("slow", ["headers", "body"])
def test_an_https_answer_that_trickles_ends_at_the_time_budget(raw_server, tmp_path, monkeypatch, slow):
    """CARTO is HTTPS: the socket the watchdog ends is the TLS one."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"

    def script(conn, stop):
        if slow == "headers":
            for byte in head + b"X-Slow: " + b"x" * 1000:
                if stop.wait(0.2):
                    return
                conn.sendall(bytes([byte]))
        conn.sendall(head + b"\r\n")
        while not stop.wait(0.2):
            conn.sendall(b" ")

    server = raw_server(script, tls=context)
    started = time.monotonic()
    error = failure(v2_job(server.url, read_timeout=5), budget=2)
    assert time.monotonic() - started < GENEROUS
    assert ("no complete answer" if slow == "headers" else "the answer was still arriving") in error.reason
    assert "when the time budget ran out" in error.reason


def test_a_tls_handshake_that_trickles_ends_at_the_time_budget():
    """The handshake's reads count too: the plain socket is watched before TLS wraps it."""
    server = SlowHandshake()
    try:
        started = time.monotonic()
        error = failure(v2_job(f"https://127.0.0.1:{server.port}/api/v2/sql", connect_timeout=60), budget=2)
        assert time.monotonic() - started < GENEROUS
        assert "time budget" in error.reason, error.reason
    finally:
        server.close()


def test_a_trickle_within_the_budget_is_an_ordinary_success(emulator):
    """A trickle fast enough to finish within the budget is an ordinary success."""
    emulator.set_trickle(64, 0.01)
    outcome = refresh(RefreshJob(name="j", api_key=KEY, sql_api_url=emulator.sql_url()))
    assert (outcome.total_rows, outcome.value) == (1, "process_data = 4")
    emulator.set_trickle(None)
    assert refresh(RefreshJob(name="j", api_key=KEY, sql_api_url=emulator.sql_url())).value == "process_data = 4"


# -- memory does not grow with the answer -----------------------------------------------------

def rows_answer(rows: int, tail=(), pad: int = 40):
    """A v2 answer of `rows` rows, then the chunks of `tail`, made as it is sent (the server
    holds one chunk at a time)."""
    def body():
        yield b'{"rows":['
        batch = []
        for i in range(rows):
            batch.append(b'%s{"cartodb_id":%d,"name":"%s","the_geom":{"type":"Point","coordinates":[1.5,%d]}}'
                         % (b"," if i else b"", i, b"x" * pad, i))
            if len(batch) == 500:
                yield b"".join(batch)
                batch = []
        yield b"".join(batch)
        yield b'],"time":1.5,"fields":{"cartodb_id":{"type":"number","pgtype":"int4"}},"total_rows":%d' % rows
        yield from tail
        yield b"}"
    return body


def peak_traced(fn):
    """(fn's result or exception, the most memory Python allocated meanwhile, in bytes)."""
    tracemalloc.start()
    try:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - returned for the test to check
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_answer_is_counted_not_kept(httpserver):
    rows = 250_000  # about 30 MB
    httpserver.expect_request("/api/v2/sql").respond_with_handler(
        lambda request: Response(rows_answer(rows)(), content_type="application/json"))
    outcome, peak = peak_traced(lambda: refresh(v2_job(httpserver.url_for("/api/v2/sql")), budget=120))
    assert isinstance(outcome, Outcome), outcome
    assert outcome.total_rows == rows and outcome.value is None
    assert peak < 4_000_000  # the answer is 30 MB: a few chunks and what is kept, never the rows


def test_an_error_after_a_large_answer_is_found_and_cut(httpserver):
    """CARTO's 200-with-error puts the error after the rows: it is found however many rows came
    before, and a huge one is cut, not kept whole."""
    def error():  # 20 MB, in pieces
        yield b',"error":["division by zero '
        for _ in range(200):
            yield b"z" * 100_000
        yield b'"]'

    httpserver.expect_request("/api/v2/sql").respond_with_handler(
        lambda request: Response(rows_answer(50_000, tail=error())(), content_type="application/json"))
    raised, peak = peak_traced(lambda: refresh(v2_job(httpserver.url_for("/api/v2/sql")), budget=120))
    assert isinstance(raised, carto.CartoError), raised
    assert raised.reason.startswith("HTTP 200 (failed after rows had streamed): division by zero zzz")
    assert raised.reason.endswith("…") and len(raised.reason) < carto.MESSAGE_CHARS + 100
    assert peak < 4_000_000


def test_a_large_answer_through_the_emulator_is_counted(emulator):
    outcome = refresh(RefreshJob(name="j", api_key=KEY, sql_api_url=emulator.sql_url(),
                                 sql="SELECT g, md5(g::text) AS h FROM generate_series(1, 100000) g"), budget=120)
    assert (outcome.total_rows, outcome.value) == (100_000, None)
    one = refresh(RefreshJob(name="j", mode="carto3", base_url=emulator.base_url, connection="dw", api_key=TOKEN,
                             sql="SELECT g FROM generate_series(1, 3000) g"))
    assert one.total_rows == 3000  # CARTO 3 gives no total_rows: the rows are counted as they come


def reader_of(data: bytes, sizes) -> carto_answer.AnswerReader:
    reader, start, i = carto_answer.AnswerReader(), 0, 0
    while start < len(data):
        size = sizes[i % len(sizes)]
        reader.feed(data[start:start + size])
        start, i = start + size, i + 1
    return reader


BOUND = (carto_answer.KEEP_KEYS + len(carto_answer.ALWAYS_KEEP) + 2) * carto_answer.KEEP_BYTES + carto_answer.HEAD_BYTES


@pytest.mark.parametrize("name, data", [
    ("one huge string", b'{"rows":["' + b"s" * 5_000_000 + b'"],"total_rows":1}'),
    ("huge keys", b"{" + b",".join(b'"%d%s":1' % (i, b"k" * 100_000) for i in range(40)) + b',"rows":[]}'),
    ("many keys", b"{" + b",".join(b'"k%d":"%s"' % (i, b"v" * 10_000) for i in range(5000)) + b"}"),
    ("deep nesting", b'{"rows":[' + b"[" * 200_000 + b"]" * 200_000 + b"]}"),
    ("huge first row", b'{"rows":[{"a":"' + b"\\\"" * 1_000_000 + b'"},{}]}'),
    ("not JSON", b"<html>" + b"x" * 3_000_000 + b"</html>"),
])
def test_the_reader_holds_a_bounded_amount_whatever_the_answer(name, data):
    for sizes in ([65536], [1, 7, 4096]):
        reader = reader_of(data, sizes)
        assert reader.peak <= BOUND, (name, reader.peak)
        reader.answer()  # and says something about it


def test_the_reader_reports_what_a_refresh_needs():
    answer = reader_of(json.dumps({"rows": [{"process_data": 4}], "time": 0.1, "total_rows": 1}).encode(), [3]).answer()
    assert (answer.rows, answer.first_row, answer.body) == (1, {"process_data": 4}, {"time": 0.1, "total_rows": 1})
    cut = reader_of(b'{"error":["' + b"e\\u00e9" * 10_000 + b'"],"hint":"h"}', [5]).answer()
    (error,) = cut.body["error"]
    assert cut.body["hint"] == "h" and error.startswith("eéeé") and error.endswith("…")
    crowded = b"{" + b"".join(b'"k%d":%d,' % (i, i) for i in range(100)) + b'"rows":[1,2],"error":"late"}'
    answer = reader_of(crowded, [10]).answer()
    assert (answer.rows, answer.body["error"], len(answer.body)) == (2, "late", carto_answer.KEEP_KEYS + 1)
    for data, problem in [(b"", "empty answer"), (b" \r\n", "empty answer"),
                          (b'{"rows":[1,2', "answer is not JSON (the JSON ended early, after 12 bytes)"),
                          (b'{"rows":[]} {}', "answer is not JSON (more after the JSON object)"),
                          (b"[1, 2]", "answer is JSON but not an object: [1, 2]"),
                          (b"<html>Bad gateway</html>", "answer is not JSON: '<html>Bad gateway</html>'"),
                          (b'{"total_rows": 01}', "answer is not JSON (its 'total_rows' is not)")]:
        answer = reader_of(data, [4]).answer()
        assert answer.body is None and answer.problem.startswith(problem), (data, answer.problem)


texts = st.text(st.characters(exclude_categories=["Cs"]))  # no lone surrogates: not UTF-8
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(st.sampled_from(["time", "total_rows", "error", "hint", "fields", "rows", "x\"\\y"]),
                            json_values, max_size=6),
       rows=st.lists(json_values, max_size=8), ascii_only=st.booleans(), indent=st.sampled_from([None, 0, 2]),
       sizes=st.lists(st.integers(1, 300), min_size=1, max_size=5))
def test_the_reader_agrees_with_json(body, rows, ascii_only, indent, sizes):
    """Whatever the answer and wherever the chunks cut it (inside strings, escapes, numbers),
    the reader finds the values, the number of rows and the first row json.loads would."""
    body = {**body, "rows": rows} if "rows" in body else body
    answer = reader_of(json.dumps(body, ensure_ascii=ascii_only, indent=indent).encode(), sizes).answer()
    assert answer.body == {k: v for k, v in body.items() if k != "rows"}
    if "rows" in body:
        assert answer.rows == len(rows) and answer.first_row == (rows[0] if rows else None)


# -- PostgreSQL mode: a million rows counted where they are -------------------------------------

def pg_job(**keys) -> RefreshJob:
    return RefreshJob(**{"name": "pg", "mode": "postgres", **keys})


def pg_refresh(job, budget=60.0):
    return postgres.refresh(job, time.monotonic() + budget, carto.Timing())


def test_a_million_row_refresh_is_counted_not_fetched(database_url):
    sql = "SELECT g, md5(g::text) AS h FROM generate_series(1, 1000000) g"
    outcome, peak = peak_traced(lambda: pg_refresh(pg_job(sql=sql)))
    assert isinstance(outcome, Outcome), outcome
    assert (outcome.total_rows, outcome.value) == (1_000_000, None)
    assert peak < 2_000_000  # a million rows fetched would be hundreds of MB


def test_a_query_through_the_cursor_keeps_its_side_effects(database_url, db):
    db.run("CREATE TABLE seen (n int)")
    db.run("CREATE FUNCTION note(n int) RETURNS int LANGUAGE sql AS $$ INSERT INTO seen VALUES (n) RETURNING n $$")
    outcome = pg_refresh(pg_job(sql="SELECT note(g) FROM generate_series(1, 5000) g"))
    assert outcome.total_rows == 5000 and db.run("SELECT count(*) FROM seen") == [[5000]]
    outcome = pg_refresh(pg_job(sql="SELECT note(42) AS noted;"))
    assert (outcome.total_rows, outcome.value) == (1, "noted = 42")


def test_a_data_modifying_statement_returning_many_rows_is_counted(database_url, db):
    db.run("CREATE TABLE big (n int)")
    sql = "INSERT INTO big SELECT generate_series(1, 300000) RETURNING n -- every row back"
    outcome, peak = peak_traced(lambda: pg_refresh(pg_job(sql=sql)))
    assert isinstance(outcome, Outcome), outcome
    assert outcome.total_rows == 300_000 and db.run("SELECT count(*) FROM big") == [[300_000]]
    assert peak < 2_000_000
    outcome = pg_refresh(pg_job(sql="UPDATE big SET n = -n WHERE n = 7 RETURNING n"))
    assert (outcome.total_rows, outcome.value) == (1, "n = -7")


@pytest.mark.parametrize("sql, line", [
    ("CALL rebuild()", "done on PostgreSQL in"),
    ("REFRESH MATERIALIZED VIEW totals", "done on PostgreSQL in"),
    ("INSERT INTO items VALUES (4), (5), (6)", ", 3 rows"),
    ("DELETE FROM items", ", 3 rows"),
    ("SELECT 1; SELECT rebuild_count()", ", 2 rows"),  # several statements run as they are
    ("VALUES (7)", ", 1 row: column1 = 7"),
    ("TABLE items", ", 3 rows"),
])
def test_statements_a_cursor_cannot_take_run_as_they_are(database_url, db, sql, line):
    db.run("CREATE TABLE items (n int)")
    db.run("INSERT INTO items VALUES (1), (2), (3)")
    db.run("CREATE PROCEDURE rebuild() LANGUAGE sql AS $$ INSERT INTO items VALUES (9) $$")
    db.run("CREATE FUNCTION rebuild_count() RETURNS int LANGUAGE sql AS $$ SELECT count(*)::int FROM items $$")
    db.run("CREATE MATERIALIZED VIEW totals AS SELECT count(*) FROM items")
    (result,) = runs.refresh([pg_job(sql=sql)])
    assert result.outcome == "ok", result.reason
    assert result.reason.startswith("done on PostgreSQL in ") and line in result.reason
    if sql.startswith("CALL"):
        assert db.run("SELECT count(*) FROM items WHERE n = 9") == [[1]]


def test_an_error_after_rows_rolls_back_and_is_reported(database_url, db):
    db.run("CREATE TABLE log (n int)")
    sql = "WITH w AS (SELECT n FROM generate_series(1, 5) n) SELECT 100 / (n - 3) FROM w"
    (result,) = runs.refresh([pg_job(sql=sql)])
    assert result.line() == "pg: error: SQLSTATE 22012: division by zero"


def test_the_statement_timeout_covers_the_whole_cursor(database_url):
    # 1.5 s of rows: FETCH 2 takes 0.6 s, MOVE the other 0.9 s; each within 1 s, not both.
    sql = "SELECT pg_sleep(0.3) FROM generate_series(1, 5)"
    (result,) = runs.refresh([pg_job(sql=sql, statement_timeout=1)])
    assert result.reason == ("statement timeout: stopped after 1 s (raise statement_timeout, or make the"
                             " statement faster)")


# -- CARTO's odd answers, true reasons ----------------------------------------------------------

@pytest.mark.parametrize("body, words", [
    (b"", "HTTP 200: empty answer: CARTO did not say whether the statement succeeded, so its outcome is unknown"),
    (b"<html>Welcome</html>", "HTTP 200: answer is not JSON: '<html>Welcome</html>': CARTO did not say"),
    (b'{"rows":[{"a":1}', "HTTP 200: answer is not JSON (the JSON ended early, after 16 bytes)"),
])
def test_a_200_without_json_is_an_unknown_outcome_not_an_error_after_rows(httpserver, body, words):
    httpserver.expect_request("/api/v2/sql").respond_with_data(body, status=200, content_type="application/json")
    error = failure(v2_job(httpserver.url_for("/api/v2/sql")))
    assert error.reason.startswith(words) and "streamed" not in error.reason
    assert len(httpserver.log) == 1


def test_a_200_with_an_error_and_no_rows_is_not_said_to_have_streamed(httpserver):
    httpserver.expect_request("/api/v2/sql").respond_with_json({"error": ["out of shared memory"]})
    assert failure(v2_job(httpserver.url_for("/api/v2/sql"))).reason == "HTTP 200 (failed): out of shared memory"


def test_retry_after_zero_still_waits_a_second(httpserver):
    answers = [Response('{"error":["You are over platform\'s limits"]}', status=429, headers={"Retry-After": "0"},
                        content_type="application/json")]
    times = []

    def handler(request):
        times.append(time.monotonic())
        if answers:
            return answers.pop(0)
        return Response('{"rows":[{"process_data":4}],"time":0.1,"fields":{},"total_rows":1}',
                        content_type="application/json")

    httpserver.expect_request("/api/v2/sql").respond_with_handler(handler)
    outcome = refresh(v2_job(httpserver.url_for("/api/v2/sql")))
    assert outcome.value == "process_data = 4" and len(times) == 2
    assert times[1] - times[0] >= carto.MIN_RATE_LIMIT_WAIT  # a rate-limited API is never hammered


@pytest.mark.parametrize("retry_after, said", [
    ("86400000", "more than 1000 days"), ("inf", "more than 1000 days"), ("3600", "60 min"),
    ("Wed, 21 Oct 2099 07:28:00 GMT", "more than 1000 days")])
def test_an_absurd_retry_after_gives_up_at_once_saying_so(httpserver, retry_after, said):
    httpserver.expect_request("/api/v2/sql").respond_with_json({"error": ["over limits"]}, status=429,
                                                               headers={"Retry-After": retry_after})
    started = time.monotonic()
    error = failure(v2_job(httpserver.url_for("/api/v2/sql")), budget=30)
    assert time.monotonic() - started < GENEROUS  # not 30 s, and certainly not what was asked
    assert f"rate limited (HTTP 429), CARTO asks to wait {said}" in error.reason
    assert error.reason.endswith(", longer than the time budget allows") and len(httpserver.log) == 1


def test_a_date_retry_after_is_honoured(httpserver):
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    answers = [Response('{"error":["over limits"]}', status=429, content_type="application/json",
                        headers={"Retry-After": format_datetime(datetime.now(timezone.utc) + timedelta(seconds=3),
                                                                usegmt=True)})]
    httpserver.expect_request("/api/v2/sql").respond_with_handler(
        lambda request: answers.pop(0) if answers else Response('{"rows":[],"total_rows":0}',
                                                                content_type="application/json"))
    started = time.monotonic()
    assert refresh(v2_job(httpserver.url_for("/api/v2/sql"))).total_rows == 0
    # The date, cut to the second, was two to three seconds away (unread, the wait would be 1 s).
    assert time.monotonic() - started >= 1.9


def test_the_whole_run_still_reports_the_bikeways_refresh(emulator, database_url):
    """Through run.py, as the CLI runs it: the line is the one the README shows."""
    (result,) = runs.refresh([RefreshJob(name="b", api_key=KEY, sql_api_url=emulator.sql_url())],
                                timing=FAST)
    assert result.outcome == "ok" and result.reason.endswith(", 1 row: process_data = 4")


# --- PostgreSQL mode: within the time budget, never a silent rollback; absurd timeouts ---

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
