"""A local stand-in for CARTO's SQL API, for tests and `make invoke-local`. Not deployed.

    emulator = CartoEmulator(database_url, users={"demo": "demo-key"})
    base = emulator.start()                       # http://127.0.0.1:PORT, a free loopback port
    emulator.sql_url("demo")                      # {base}/user/demo/api/v2/sql
    emulator.stop()

    python -m devtools.carto_emulator [--user demo --api-key KEY] [--statement-timeout-ms 5000]

It answers the subset a refresh job uses by running the SQL on a real PostgreSQL, shaped as
CARTO's open-source server answers (see the project's CARTO reference notes):

- `/user/{user}/api/v{1,2}/sql`, or `/api/v{1,2}/sql` with the user as the Host's first label;
  GET or POST; query-string and body (form or JSON) parameters merged, the body winning.
- Auth in CARTO's order: HTTP Basic (user, key), then `api_key` in the query string, then in the
  body. Unknown key: 401 `["Unauthorized"]`; Basic with another user name: 403. No key, or a
  `regular_keys` key, runs as a read-only role, so writes fail "permission denied" (403).
- Success `{"rows", "time", "fields", "total_rows"}` (+ `notices`/`warnings`), fields typed
  with CARTO's mapping. Errors `{"error": [msg], "context"?, "detail"?, "hint"?}`, 400 unless
  the message says "permission denied" (403); unknown user 404; missing `q` 400.
- Each synchronous request runs under `statement_timeout_ms`; hitting it answers 429 without
  Retry-After, `"context": "limit", "detail": "datasource"`.
- Rows stream from a cursor, first one row, then in batches: an error after the first row keeps
  status 200 and appends `"error"` to the body, as CARTO does (e.g.
  `SELECT 100 / (n - 3) FROM generate_series(1, 5) n`). Several statements, or anything
  DECLARE CURSOR refuses (INSERT, DDL), run whole, without streaming.
- `set_rate_limit(requests, window_s)`: past that many requests per window and user, 429 with
  Retry-After and the Carto-Rate-Limit-* headers.
- Batch API at `{sql}/job`: POST (master key) → 201 job, run FIFO by a background thread,
  GET/DELETE `{sql}/job/{id}`; statuses pending, running, done, failed (`failed_reason`),
  cancelled; a finished job is forgotten after `job_ttl` seconds, then 400 "Job with id X not found".
- CARTO 3: `/v3/sql/{connection}/query` and `/job`, `Authorization: Bearer` from `v3_tokens`.
  Its answers follow the reference where known; job objects reuse v2's shape (unconfirmed).

Every request is kept in `requests` (method, raw path with query string, headers, body) so
tests can check what a client really sent.
"""

import argparse
import base64
import json
import math
import os
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pg8000.native

from shared.platform import db

PUBLIC_ROLE = "carto_emulator_public"  # what requests without a master key run as
TIMEOUT_MESSAGE = ("You are over platform's limits: SQL query timeout error. Refactor your query before"
                   " running again or contact CARTO support for more details.")
RATE_LIMIT_MESSAGE = "You are over platform's limits. Please contact us to know more details"
MAX_JOB_PAYLOAD = 16384
MAX_QUEUED_JOBS = 64
FETCH_BATCH = 1000


@dataclass
class Captured:
    method: str
    path: str  # as received, query string included
    headers: dict
    body: bytes


@dataclass
class Job:
    job_id: str
    user: str
    query: str | list
    role: str | None
    status: str = "pending"
    created_at: str = ""
    updated_at: str = ""
    failed_reason: str | None = None
    finished_at: float | None = None  # monotonic, for expiry
    backend_pid: int | None = None

    def serialize(self) -> dict:
        out = {"job_id": self.job_id, "user": self.user, "status": self.status, "query": self.query,
               "created_at": self.created_at, "updated_at": self.updated_at}
        if self.failed_reason is not None:
            out["failed_reason"] = self.failed_reason
        return out


class HttpAnswer(Exception):
    """An error answer: raised anywhere in a request's handling, written once."""

    def __init__(self, status: int, body: dict, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


@dataclass
class QueryResult:
    rows: list
    columns: list
    total_rows: int
    notices: list
    error: Exception | None = None  # raised after rows had streamed


class CartoEmulator:
    def __init__(self, database_url: str, users: dict[str, str] | None = None, *,
                 regular_keys: dict[str, str] | None = None, v3_tokens: dict[str, str] | None = None,
                 statement_timeout_ms: int = 5000, job_ttl: float = 7200.0, host: str = "127.0.0.1",
                 port: int = 0):
        self.database_url = database_url
        self.users = dict(users or {"demo": "demo-master-key"})  # user -> master API key
        self.regular_keys = dict(regular_keys or {})  # key -> user; runs as the read-only role
        self.v3_tokens = dict(v3_tokens or {})  # token -> user
        self.statement_timeout_ms = statement_timeout_ms
        self.job_ttl = job_ttl
        self.host, self.port = host, port
        self.requests: list[Captured] = []
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._rate_limit: tuple[int, float] | None = None
        self._windows: dict[str, tuple[float, int]] = {}
        self._queue: queue.Queue = queue.Queue()
        self._server: ThreadingHTTPServer | None = None
        self._type_names: dict[int, str] = {}

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> str:
        """Serve on a free loopback port (threads); return the base URL."""
        self._ensure_public_role()
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="carto-emulator", daemon=True).start()
        threading.Thread(target=self._work_jobs, name="carto-emulator-batch", daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._queue.put(None)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._server.server_port}"

    def sql_url(self, user: str = "demo") -> str:
        return f"{self.base_url}/user/{user}/api/v2/sql"

    def set_rate_limit(self, requests_per_window: int | None, window_s: float = 1.0) -> None:
        """Allow this many requests per user per window (None: no limit)."""
        with self._lock:
            self._rate_limit = (requests_per_window, window_s) if requests_per_window is not None else None
            self._windows.clear()

    # -- the SQL API ------------------------------------------------------------------------

    def sql(self, user: str, headers, params: dict) -> tuple[int, dict]:
        role = self._authenticate(user, headers, params)
        sql = params.get("q")
        if not sql:
            raise HttpAnswer(400, {"error": ["You must indicate a sql query"]})
        fmt = params.get("format") or "json"
        if fmt != "json":
            raise HttpAnswer(400, {"error": [f"Invalid format: {fmt}"]})
        started = time.monotonic()
        result = self._query(sql, role, self.statement_timeout_ms)
        body = {"rows": [_row(result.columns, row) for row in result.rows],
                "time": round(time.monotonic() - started, 3),
                "fields": self._fields(result.columns),
                "total_rows": result.total_rows}
        if result.error is not None:
            # Rows had streamed: the status stays 200 and the error is appended (CARTO's json format).
            body["error"] = _error_body(result.error)[1]["error"]
        for severity, messages in _group_notices(result.notices).items():
            body[severity] = messages
        return 200, body

    def sql_v3(self, user: str, params: dict) -> tuple[int, dict]:
        sql = params.get("q") or params.get("query")
        if not sql:
            raise HttpAnswer(400, {"error": "You must indicate a sql query"})
        try:
            result = self._query(sql, None, self.statement_timeout_ms)
        except HttpAnswer as answer:
            error = answer.body.get("error")
            answer.body["error"] = error[0] if isinstance(error, list) else error
            raise
        if result.error is not None:
            raise HttpAnswer(*_error_body(result.error))
        return 200, {"rows": [_row(result.columns, row) for row in result.rows],
                     "schema": [{"name": c["name"], "type": self._type_name(c["type_oid"])} for c in result.columns or []],
                     "meta": {"cacheHit": False, "totalBytesProcessed": "0", "location": "emulator"}}

    def _query(self, sql: str, role: str | None, timeout_ms: int | None) -> QueryResult:
        try:
            con = db.connect(self.database_url, statement_timeout=f"{timeout_ms}ms" if timeout_ms else "0")
        except ConnectionError:
            raise HttpAnswer(500, {"error": ["cannot connect to the database"]}) from None
        try:
            if role:
                con.run(f"SET ROLE {PUBLIC_ROLE}")
            if not self._type_names:
                self._type_names.update({oid: name for oid, name in con.run("SELECT oid::int, typname FROM pg_type")})
            return _run_streaming(con, sql)
        except pg8000.native.DatabaseError as exc:
            raise HttpAnswer(*_error_body(exc)) from None
        finally:
            con.close()

    def _fields(self, columns) -> dict:
        out = {}
        for column in columns or []:
            name = self._type_name(column["type_oid"])
            out[column["name"]] = {"type": carto_type(name), "pgtype": name}
        return out

    def _type_name(self, oid: int) -> str:
        return self._type_names.get(oid, f"unknown({oid})")

    # -- auth and limits --------------------------------------------------------------------

    def _check_user(self, user: str | None) -> None:
        if user not in self.users:
            raise HttpAnswer(404, {"error": [f"Sorry, we can't find CARTO user '{user}'. Please check that"
                                             " you have entered the correct domain."]})

    def _authenticate(self, user: str, headers, params: dict, master: bool = False) -> str | None:
        """None for the master key, else the read-only role; raise the error answer."""
        basic = _basic_auth(headers.get("Authorization"))
        if basic:
            basic_user, key = basic
            if basic_user != user:
                raise HttpAnswer(403, {"error": ["permission denied"]})
        else:
            key = params.get("api_key")
        if key and key == self.users.get(user):
            return None
        if key and self.regular_keys.get(key) != user:
            raise HttpAnswer(401, {"error": ["Unauthorized"]})
        if master:  # the Batch API wants the master key
            raise HttpAnswer(403, {"error": ["permission denied"]})
        return PUBLIC_ROLE

    def _rate_limit_headers(self, user: str) -> dict:
        """Count this request; raise the 429 answer when the user is over the limit."""
        with self._lock:
            if self._rate_limit is None:
                return {}
            limit, window = self._rate_limit
            now = time.monotonic()
            start, used = self._windows.get(user, (now, 0))
            if now - start >= window:
                start, used = now, 0
            reset = max(1, math.ceil(start + window - now))
            if used >= limit:
                headers = {"Carto-Rate-Limit-Limit": limit, "Carto-Rate-Limit-Remaining": 0,
                           "Carto-Rate-Limit-Reset": reset, "Retry-After": reset}
                raise HttpAnswer(429, {"error": [RATE_LIMIT_MESSAGE], "context": "limit", "detail": "rate-limit"},
                                 headers)
            self._windows[user] = (start, used + 1)
            return {"Carto-Rate-Limit-Limit": limit, "Carto-Rate-Limit-Remaining": limit - used - 1,
                    "Carto-Rate-Limit-Reset": reset}

    def _ensure_public_role(self) -> None:
        con = db.connect(self.database_url)
        try:
            # Roles are cluster-wide: another emulator may have made it already.
            con.run(f"DO $$ BEGIN CREATE ROLE {PUBLIC_ROLE} NOLOGIN; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        finally:
            con.close()

    # -- the Batch API ----------------------------------------------------------------------

    def create_job(self, user: str, headers, params: dict) -> tuple[int, dict]:
        role = self._authenticate(user, headers, params, master=True)
        query = params.get("query")
        valid = isinstance(query, str) and query.strip() or \
            isinstance(query, list) and query and all(isinstance(q, str) and q.strip() for q in query)
        if not valid:
            raise HttpAnswer(400, {"error": ["You must indicate a valid SQL"]})
        payload = json.dumps(params)
        if len(payload) > MAX_JOB_PAYLOAD:
            raise HttpAnswer(400, {"error": [f"Your payload is too large: {len(payload)} bytes. Max size allowed"
                                             f" is {MAX_JOB_PAYLOAD} bytes (16kb). Are you trying to import data?."]})
        with self._lock:
            self._forget_expired()
            if sum(j.status == "pending" for j in self.jobs.values()) >= MAX_QUEUED_JOBS:
                raise HttpAnswer(400, {"error": [f"Failed to create job. Max number of jobs ({MAX_QUEUED_JOBS})"
                                                 " queued reached"]})
            now = _iso_now()
            job = Job(str(uuid.uuid4()), user, query, role, created_at=now, updated_at=now)
            self.jobs[job.job_id] = job
        self._queue.put(job.job_id)
        return 201, job.serialize()

    def get_job(self, user: str, headers, params: dict, job_id: str) -> tuple[int, dict]:
        self._authenticate(user, headers, params, master=True)
        with self._lock:
            return 200, self._find_job(user, job_id).serialize()

    def cancel_job(self, user: str, headers, params: dict, job_id: str) -> tuple[int, dict]:
        self._authenticate(user, headers, params, master=True)
        with self._lock:
            job = self._find_job(user, job_id)
            if job.status not in ("pending", "running"):
                raise HttpAnswer(400, {"error": [f"Cannot set status from {job.status} to cancelled"]})
            pid = job.backend_pid if job.status == "running" else None
            self._finish(job, "cancelled")
        if pid:
            con = db.connect(self.database_url)
            try:
                con.run("SELECT pg_cancel_backend(:pid)", pid=pid)
            finally:
                con.close()
        return 200, job.serialize()

    def _find_job(self, user: str, job_id: str) -> Job:
        self._forget_expired()
        job = self.jobs.get(job_id)
        if job is None or job.user != user:
            raise HttpAnswer(400, {"error": [f"Job with id {job_id} not found"]})
        return job

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for job_id in [j.job_id for j in self.jobs.values()
                       if j.finished_at is not None and now - j.finished_at >= self.job_ttl]:
            del self.jobs[job_id]

    def _finish(self, job: Job, status: str, reason: str | None = None) -> None:
        job.status, job.failed_reason = status, reason
        job.updated_at, job.finished_at = _iso_now(), time.monotonic()

    def _work_jobs(self) -> None:
        """Run queued jobs one at a time, first in first out, as CARTO does per user."""
        while (job_id := self._queue.get()) is not None:
            with self._lock:
                job = self.jobs.get(job_id)
                if job is None or job.status != "pending":
                    continue
                job.status, job.updated_at = "running", _iso_now()
            try:
                self._run_job(job)
            except Exception as exc:  # a broken job must not stop the worker
                with self._lock:
                    if job.status == "running":
                        self._finish(job, "failed", str(exc))

    def _run_job(self, job: Job) -> None:
        try:
            con = db.connect(self.database_url, statement_timeout="0")
        except ConnectionError as exc:
            with self._lock:
                self._finish(job, "failed", str(exc))
            return
        try:
            pid = con.run("SELECT pg_backend_pid()")[0][0]
            with self._lock:
                if job.status != "running":
                    return
                job.backend_pid = pid
            if job.role:
                con.run(f"SET ROLE {job.role}")
            for sql in job.query if isinstance(job.query, list) else [job.query]:
                con.run(sql)
            with self._lock:
                if job.status == "running":
                    self._finish(job, "done")
        except pg8000.native.DatabaseError as exc:
            with self._lock:
                if job.status == "running":
                    self._finish(job, "failed", _pg_fields(exc).get("M", str(exc)))
        finally:
            con.close()


class _Handler(BaseHTTPRequestHandler):
    emulator: CartoEmulator
    protocol_version = "HTTP/1.1"

    V2 = re.compile(r"^(?:/user/(?P<user>[^/]+))?/api/v[12]/sql(?P<job>/job(?:/(?P<job_id>[^/]+))?)?/?$")
    V3 = re.compile(r"^/v3/sql/(?P<connection>[^/]+)/(?:query|(?P<job>job)(?:/(?P<job_id>[^/]+))?)/?$")

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def log_message(self, *args):
        pass  # quiet: tests and invoke-local print what matters

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        emulator = self.emulator
        with emulator._lock:
            emulator.requests.append(Captured(self.command, self.path, dict(self.headers.items()), raw))
        headers: dict = {}
        try:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            params.update(_body_params(self.headers.get("Content-Type", ""), raw))
            if match := self.V2.match(parts.path):
                user = match.group("user") or (self.headers.get("Host") or "").split(".")[0].split(":")[0]
                emulator._check_user(user)
                headers = emulator._rate_limit_headers(user)
                status, body = self._v2(match, user, params)
            elif match := self.V3.match(parts.path):
                user = self._bearer_user()
                headers = emulator._rate_limit_headers(user)
                status, body = self._v3(match, user, params)
            else:
                raise HttpAnswer(404, {"error": ["not found"]})
        except HttpAnswer as answer:
            status, body = answer.status, answer.body
            headers = {**headers, **answer.headers}
        self._send(status, body, headers)

    def _v2(self, match, user: str, params: dict) -> tuple[int, dict]:
        emulator, method, job_id = self.emulator, self.command, match.group("job_id")
        if not match.group("job"):
            if method == "DELETE":
                raise HttpAnswer(404, {"error": ["not found"]})
            return emulator.sql(user, self.headers, params)
        if job_id is None and method == "POST":
            return emulator.create_job(user, self.headers, params)
        if job_id and method == "GET":
            return emulator.get_job(user, self.headers, params, job_id)
        if job_id and method == "DELETE":
            return emulator.cancel_job(user, self.headers, params, job_id)
        raise HttpAnswer(404, {"error": ["not found"]})

    def _v3(self, match, user: str, params: dict) -> tuple[int, dict]:
        emulator, method, job_id = self.emulator, self.command, match.group("job_id")
        if not match.group("job"):
            return emulator.sql_v3(user, params)
        # Bearer already checked: the job routes then act as the user's master key would.
        params = {**params, "api_key": emulator.users[user]}
        if job_id is None and method == "POST":
            params.setdefault("query", params.get("q"))
            return emulator.create_job(user, {}, params)
        if job_id and method == "GET":
            return emulator.get_job(user, {}, params, job_id)
        if job_id and method == "DELETE":
            return emulator.cancel_job(user, {}, params, job_id)
        raise HttpAnswer(404, {"error": "not found"})

    def _bearer_user(self) -> str:
        auth = self.headers.get("Authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else None
        user = self.emulator.v3_tokens.get(token) if token else None
        if user is None or user not in self.emulator.users:
            raise HttpAnswer(401, {"error": "Unauthorized"})
        return user

    def _send(self, status: int, body: dict, headers: dict) -> None:
        data = json.dumps(body, default=_json_value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(data)


# -- running SQL ------------------------------------------------------------------------------

def _run_streaming(con, sql: str) -> QueryResult:
    """Run `sql` as CARTO streams it: through a cursor, so rows that arrived before an error
    are kept (CARTO then answers 200 with an `error`). What a cursor cannot hold runs whole."""
    single = ";" not in sql.strip().rstrip(";")
    if single:
        con.run("BEGIN")
        try:
            con.run(f"DECLARE carto_emulator_rows NO SCROLL CURSOR FOR {sql.strip().rstrip(';')}")
        except pg8000.native.DatabaseError as exc:
            con.run("ROLLBACK")
            # 42601 syntax error / 0A000 not supported: not a plain query (INSERT, DDL, ...).
            if _pg_fields(exc).get("C") not in ("42601", "0A000"):
                raise
            single = False
    if not single:
        con.notices.clear()
        rows = con.run(sql) or []
        return QueryResult(rows, con.columns or [], max(con.row_count or 0, len(rows)), list(con.notices))
    con.notices.clear()
    rows, columns = [], []
    try:
        while True:
            size = 1 if not rows else FETCH_BATCH
            batch = con.run(f"FETCH {size} FROM carto_emulator_rows")
            columns = con.columns or columns
            rows.extend(batch)
            if len(batch) < size:
                break
        con.run("COMMIT")
    except pg8000.native.DatabaseError as exc:
        try:
            con.run("ROLLBACK")
        except pg8000.native.DatabaseError:
            pass
        if not rows:
            raise
        return QueryResult(rows, columns, len(rows), list(con.notices), error=exc)
    return QueryResult(rows, columns, len(rows), list(con.notices))


def carto_type(pgtype: str) -> str:
    """CARTO's `fields` type for a PostgreSQL type name, tested in CARTO's order."""
    if "bool" in pgtype:
        kind = "boolean"
    elif re.search(r"int|float|numeric", pgtype):
        kind = "number"
    elif re.search(r"text|char|unknown", pgtype):
        kind = "string"
    elif re.search(r"date|time", pgtype):
        kind = "date"
    else:
        kind = pgtype
    return kind + "[]" if pgtype.startswith("_") else kind


def _pg_fields(exc: Exception) -> dict:
    return exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {"M": str(exc)}


def _is_timeout(message: str) -> bool:
    return "statement timeout" in message or "canceling statement due to user request" in message


def _error_body(exc: Exception) -> tuple[int, dict]:
    fields = _pg_fields(exc)
    message = fields.get("M", str(exc))
    if _is_timeout(message):
        return 429, {"error": [TIMEOUT_MESSAGE], "context": "limit", "detail": "datasource"}
    body = {"error": [message]}
    for key, code in (("context", "W"), ("detail", "D"), ("hint", "H")):
        if code in fields:
            body[key] = fields[code]
    return (403 if "permission denied" in message else 400), body


def _group_notices(notices) -> dict:
    """{"notices": [...], "warnings": [...]}: CARTO keys messages by lowercased severity + "s"."""
    grouped: dict[str, list] = {}
    for notice in notices:  # pg8000 keeps each notice's fields as bytes, keyed by field code
        fields = {k.decode(): v.decode("utf-8", "replace") for k, v in notice.items() if k}
        severity = (fields.get("V") or fields.get("S") or "notice").lower() + "s"
        grouped.setdefault(severity, []).append(fields.get("M", ""))
    return grouped


def _row(columns, values) -> dict:
    return {c["name"]: v for c, v in zip(columns, values)}


def _json_value(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return str(value)


def _iso_now() -> str:
    """ISO 8601 with milliseconds, as CARTO's job objects carry."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, key = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, key


def _body_params(content_type: str, raw: bytes) -> dict:
    if not raw:
        return {}
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(raw)
        except ValueError:
            raise HttpAnswer(400, {"error": ["Invalid JSON body"]}) from None
        return data if isinstance(data, dict) else {}
    if kind == "application/x-www-form-urlencoded":
        return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    return {}  # multipart is not emulated


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.carto_emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--user", default="demo")
    parser.add_argument("--api-key", default="demo-master-key")
    parser.add_argument("--statement-timeout-ms", type=int, default=5000)
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    args = parser.parse_args(argv)
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        from devtools import localpg
        database_url = localpg.ensure_server(Path(__file__).resolve().parent.parent / ".local" / "pgdata")
    emulator = CartoEmulator(database_url, {args.user: args.api_key}, statement_timeout_ms=args.statement_timeout_ms,
                             port=args.port)
    emulator.start()
    print(f"CARTO SQL API emulator: {emulator.sql_url(args.user)} (Ctrl-C stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
