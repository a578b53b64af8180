"""What CARTO sends, whatever its shape: every answer ends as one clear, bounded line without any
piece of the API key (a 200 carrying an error is a failure, cut answers and echoed credentials
show no key, control characters and lone surrogates stay one line). Real loopback servers."""

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
from shared.refresh.job import RefreshJob
from tests.carto_fixtures import FAST, KEY, v2_job

ROOT = Path(__file__).resolve().parent.parent


def failure(job: RefreshJob, budget: float = 10.0) -> carto.CartoError:
    with pytest.raises(carto.CartoError) as raised:
        carto.refresh(job, time.monotonic() + budget, timing=FAST)
    return raised.value


def key_pieces(text: str, size: int = 6) -> list[str]:
    """The pieces of the key (of `size` characters) that `text` shows."""
    return [KEY[i:i + size] for i in range(len(KEY) - size + 1) if KEY[i:i + size] in text]


def one_line(text: str) -> bool:
    return not any(ord(c) < 32 or c in "\x7f\u2028\u2029" or "\ud800" <= c <= "\udfff" for c in text)


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


# -- run history: a database that never answers, two runs at once, one going away --------------


# -- the history tools and the seed's odd data -------------------------------------------------


# -- a job's absurd timeouts, urlwatch's odd files -----------------------------------------------


