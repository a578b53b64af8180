"""The emulator: its settings and state, the loopback HTTP server, and the routing of each
request to the module that answers it (sql_api, batch, v3).

- `/user/{user}/api/v{1,2}/sql[/job[/{id}]]`, or `/api/v{1,2}/sql...` with the user as the
  Host's first label; `/v3/sql/{connection}/query|job[/{id}]`. GET, POST, DELETE; query-string
  and body (form or JSON) parameters merged, the body winning.
- `set_rate_limit(requests, window_s)`: past that many requests per window and user, 429 with
  Retry-After and the Carto-Rate-Limit-* headers.
- `set_v3_sync_limit(seconds, answer)`: CARTO 3's limit of synchronous queries and what a query
  past it gets ("504", "error", "none"; see v3.py).
- `set_trickle(bytes_per_write, interval_s)`: send every answer's body that many bytes at a time,
  `interval_s` apart (a slow or hostile network: each write well within any read timeout, the
  whole answer far past it); `set_trickle(None)` sends bodies at once again (the default).
"""

import json
import queue
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from devtools.carto_emulator import auth, batch, postgres, sql_api, v3
from devtools.carto_emulator.answers import HttpAnswer, NoAnswer, encode

NO_ANSWER_HOLD = 600.0  # seconds a "none" answer keeps the connection at most, past any read timeout


@dataclass
class Captured:
    method: str
    path: str  # as received, query string included
    headers: dict
    body: bytes


class CartoEmulator:
    def __init__(self, database_url: str, users: dict[str, str] | None = None, *,
                 regular_keys: dict[str, str] | None = None, v3_tokens: dict[str, str] | None = None,
                 statement_timeout_ms: int = 5000, v3_sync_limit: float = 60.0, v3_timeout_answer: str = "504",
                 job_ttl: float = 7200.0, host: str = "127.0.0.1", port: int = 0):
        self.database_url = database_url
        self.users = dict(users or {"demo": "demo-master-key"})  # user -> master API key
        self.regular_keys = dict(regular_keys or {})  # key -> user; runs as the read-only role
        self.v3_tokens = dict(v3_tokens or {})  # token -> user
        self.statement_timeout_ms = statement_timeout_ms  # v2's per-plan limit
        self.set_v3_sync_limit(v3_sync_limit, v3_timeout_answer)
        self.job_ttl = job_ttl
        self.host, self.port = host, port
        self.requests: list[Captured] = []
        self.jobs: dict[str, batch.Job] = {}
        self.lock = threading.Lock()
        self.rate_limit: tuple[int, float] | None = None
        self.windows: dict[str, tuple[float, int]] = {}  # user -> (window start, requests in it)
        self.job_queue: queue.Queue = queue.Queue()
        self.type_names: dict[int, str] = {}  # PostgreSQL type oid -> name
        self.stopping = threading.Event()
        self.trickle: tuple[int, float] | None = None  # (bytes per write, seconds between writes)
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> str:
        """Serve on a free loopback port (threads); return the base URL."""
        postgres.ensure_public_role(self.database_url)
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="carto-emulator", daemon=True).start()
        threading.Thread(target=batch.work, args=(self,), name="carto-emulator-batch", daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        if self._server:
            self.stopping.set()  # releases requests held without an answer
            self._server.shutdown()
            self._server.server_close()
            self.job_queue.put(None)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._server.server_port}"

    def sql_url(self, user: str = "demo") -> str:
        return f"{self.base_url}/user/{user}/api/v2/sql"

    def v3_url(self, connection: str = "carto_dw") -> str:
        return f"{self.base_url}/v3/sql/{connection}"

    # -- settings ---------------------------------------------------------------------------

    def set_rate_limit(self, requests_per_window: int | None, window_s: float = 1.0) -> None:
        """Allow this many requests per user per window (None: no limit)."""
        with self.lock:
            self.rate_limit = (requests_per_window, window_s) if requests_per_window is not None else None
            self.windows.clear()

    def set_v3_sync_limit(self, seconds: float, answer: str = "504") -> None:
        """Stop CARTO 3's synchronous queries after `seconds`, answering as `answer` says."""
        if answer not in v3.TIMEOUT_ANSWERS:
            raise ValueError(f"answer {answer!r} must be one of {', '.join(v3.TIMEOUT_ANSWERS)}")
        if not seconds > 0:
            raise ValueError(f"the v3 sync limit must be a positive number of seconds, not {seconds!r}")
        self.v3_sync_limit, self.v3_timeout_answer = seconds, answer

    def set_trickle(self, bytes_per_write: int | None, interval_s: float = 0.5) -> None:
        """Send answers' bodies `bytes_per_write` bytes at a time, `interval_s` apart (None: at once)."""
        if bytes_per_write is not None and (bytes_per_write < 1 or not interval_s >= 0):
            raise ValueError("the trickle needs at least 1 byte per write and a wait of 0 s or more")
        self.trickle = (bytes_per_write, interval_s) if bytes_per_write is not None else None


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
        with emulator.lock:
            emulator.requests.append(Captured(self.command, self.path, dict(self.headers.items()), raw))
        headers: dict = {}
        parts = urlsplit(self.path)
        try:
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            params.update(_body_params(self.headers.get("Content-Type", ""), raw))
            if match := self.V2.match(parts.path):
                user = match.group("user") or (self.headers.get("Host") or "").split(".")[0].split(":")[0]
                auth.check_user(emulator, user)
                headers = auth.rate_limit_headers(emulator, user)
                status, body = self._v2(match, user, params)
            elif match := self.V3.match(parts.path):
                user = auth.bearer_user(emulator, self.headers)
                headers = auth.rate_limit_headers(emulator, user)
                status, body = v3.route(emulator, self.command, user, match, params)
            else:
                raise HttpAnswer(404, {"error": ["not found"]})
        except HttpAnswer as answer:
            status, body = answer.status, answer.body
            if parts.path.startswith("/v3/"):
                body = v3.error_shape(body)
            headers = {**headers, **answer.headers}
        except NoAnswer:
            emulator.stopping.wait(NO_ANSWER_HOLD)
            self.close_connection = True
            return
        self._send(status, body, headers)

    def _v2(self, match, user: str, params: dict) -> tuple[int, dict]:
        emulator, method, job_id = self.emulator, self.command, match.group("job_id")
        if not match.group("job"):
            if method == "DELETE":
                raise HttpAnswer(404, {"error": ["not found"]})
            return sql_api.sql(emulator, user, self.headers, params)
        if job_id is None and method == "POST":
            return batch.create_job(emulator, user, self.headers, params)
        if job_id and method == "GET":
            return batch.get_job(emulator, user, self.headers, params, job_id)
        if job_id and method == "DELETE":
            return batch.cancel_job(emulator, user, self.headers, params, job_id)
        raise HttpAnswer(404, {"error": ["not found"]})

    def _send(self, status: int, body: dict | str, headers: dict) -> None:
        data, content_type = encode(body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        trickle = self.emulator.trickle
        if trickle is None:
            self.wfile.write(data)
            return
        size, interval = trickle
        try:
            for start in range(0, len(data), size):
                if self.emulator.stopping.wait(interval):
                    break
                self.wfile.write(data[start:start + size])
        except OSError:  # the client gave up on the answer
            pass
        self.close_connection = True


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
