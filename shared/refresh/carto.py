"""The CARTO SQL API client of refresh jobs: run one statement until it is done or clearly failed.

- v2 (`mode = "carto"`): POST `{endpoint}` with `q` and `api_key` in the form body, never in the
  URL (proxies and server logs keep URLs). Batch API polls authenticate with HTTP Basic.
- CARTO 3 (`mode = "carto3"`): POST `{base_url}/v3/sql/{connection}/query`, Bearer token. Jobs
  are created at `.../job` and polled at `.../job/{jobId}` (never `externalId`, the warehouse's id).

Success is a 2xx whose JSON has no `error`: CARTO answers 200 with an `error` key when a
statement fails after rows started streaming. Waits, all bounded by one deadline:
- 429 with Retry-After (rate limit): wait that long, retry.
- network errors, 5xx, 429 without Retry-After: retry with exponential backoff.
- statement timeout (429 without Retry-After, `detail: datasource`): a synchronous retry cannot
  succeed, so run the statement as a Batch API job and poll it until it ends.
- CARTO 3 stops synchronous queries after one minute, whatever form that takes (504, no answer
  within the read timeout, an error saying it timed out): run it as a job, as CARTO's docs say.
- any other 4xx: fail at once with CARTO's own message and hint.

Answers are read as they arrive (stream=True) and never held whole: `_AnswerReader` counts the
rows and keeps only what a refresh reports (the first row, `total_rows`, `error`, `hint`...),
each value cut at KEEP_BYTES, so memory does not grow with what CARTO sends. The deadline
bounds the whole exchange: a timer shuts down the run's sockets when it passes, so an answer
that trickles in (a few bytes within each read timeout) ends there too.
"""

import functools
import json
import logging
import math
import random
import re
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone

import requests
from requests.adapters import HTTPAdapter
from urllib3 import connection as u3_connection, connectionpool as u3_pool, exceptions as u3_exceptions, \
    poolmanager as u3_poolmanager
from urllib3.exceptions import ReadTimeoutError

from shared import USER_AGENT
from shared.platform import log
from shared.refresh.job import RefreshJob
from shared.refresh.outcome import Outcome

logger = logging.getLogger(__name__)

# What a status means to a user reading one line; CARTO's own message follows it. (A 200 is
# a failure only with an `error`: see _Run.call.)
STATUS_MEANING = {
    401: "API key rejected",
    403: "permission denied",
    404: "not found: check the user name or endpoint",
    429: "over CARTO's limits",
}
TIMEOUT_MARKERS = ("SQL query timeout", "statement timeout")
# CARTO 3's timeout words depend on the warehouse ("timeout", "timed out", "statement_timeout"):
# letters on either side are other words ("runtime out of memory").
V3_TIMED_OUT = re.compile(r"(?<![a-z])time[ds]?[ _-]?out(?![a-z])", re.IGNORECASE)
# Batch job statuses. CARTO's server spells "cancelled"; its docs and carto-python "canceled".
# CARTO 3's job words are unconfirmed, so its likely ones are accepted too.
JOB_WAITING = {"pending", "running", "queued"}
JOB_DONE = {"done", "success", "succeeded", "completed"}
EXPIRED_JOB = re.compile(r"Job with id \S+ not found")
# However soon a 429's Retry-After says (0 included), a rate-limited API is not asked again sooner.
MIN_RATE_LIMIT_WAIT = 1.0
# What one answer may cost in memory, whatever its size: read CHUNK_BYTES at a time; keep at
# most KEEP_KEYS top-level values (the rows aside), KEEP_BYTES each, and the first row.
CHUNK_BYTES = 64 * 1024
KEEP_BYTES = 16 * 1024
KEEP_KEYS = 32
HEAD_BYTES = 512  # of the answer as it came, for messages about answers that are not JSON
# Kept however many keys came before them: what decides success, and what is reported.
ALWAYS_KEEP = frozenset({"error", "hint", "detail", "context", "total_rows", "status", "failed_reason",
                         "job_id", "jobId"})
MESSAGE_CHARS = 2000  # of CARTO's own message in a reason


@dataclass(frozen=True)
class Timing:
    """Waits between tries. Backoff 2 s doubling to 60 s leaves room for about eight tries in
    the default 9-minute budget; polls start at 1 s (most refresh jobs end within seconds) and
    grow to 15 s, so an hour-long job costs a few hundred cheap GETs. Tests shrink them."""
    backoff_initial: float = 2.0
    backoff_max: float = 60.0
    poll_initial: float = 1.0
    poll_growth: float = 1.5
    poll_max: float = 15.0
    # Added to read_timeout for CARTO 3's synchronous call (60 + 5 s by default): CARTO's own
    # answer at its one-minute limit then arrives before our read timeout.
    v3_sync_margin: float = 5.0


class CartoError(Exception):
    """A refresh that did not happen (or whose outcome is unknown). `reason` is the one line
    shown to users: HTTP status, CARTO's own message and hint; never the API key."""

    def __init__(self, job: str, message: str, status: int | None = None, hint: str | None = None,
                 meaning: str | None = None):
        self.job, self.message, self.status, self.hint = job, message, status, hint
        self.meaning = meaning if meaning is not None else STATUS_MEANING.get(status)
        super().__init__(f"{job}: {self.reason}")

    @property
    def reason(self) -> str:
        head = ""
        if self.status is not None:
            meaning = self.meaning
            head = f"HTTP {self.status}" + (f" ({meaning})" if meaning else "") + ": "
        tail = f" (hint: {self.hint})" if self.hint else ""
        return log.redact(head + self.message + tail)


class _StatementTimeout(CartoError):
    """CARTO stopped the synchronous statement at its limit (v2: the plan's; CARTO 3: one
    minute): go to the Batch API (v2) or a job (CARTO 3)."""


@dataclass(frozen=True)
class Endpoints:
    query: str
    job: str  # the Batch API; one job is {job}/{id}
    job_id_key: str = "job_id"  # the key of the creation's answer that holds {id} (v2's)


def endpoints(job: RefreshJob) -> Endpoints:
    if job.mode == "carto3":
        base = f"{job.base_url.rstrip('/')}/v3/sql/{requests.utils.quote(job.connection, safe='')}"
        # `externalId`, also in the answer, is the warehouse's own id: CARTO does not know it.
        return Endpoints(f"{base}/query", f"{base}/job", job_id_key="jobId")
    url = (job.sql_api_url or f"https://{job.username}.carto.com/api/v2/sql").rstrip("/")
    return Endpoints(url, f"{url}/job", job_id_key="job_id")


def refresh(job: RefreshJob, deadline: float, *, timing: Timing = Timing(),
            session: requests.Session | None = None) -> Outcome:
    """Run the job's statement through CARTO; raise CartoError unless it certainly succeeded.
    `deadline` is a time.monotonic() value that no wait, request or answer goes past. A
    `session` given gets this run's adapters (which end its connections at the deadline)."""
    own_session = session is None
    session = session or requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    watchdog = _Watchdog(deadline)
    adapter = _DeadlineAdapter(watchdog)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    try:
        return _Run(job, deadline, timing, session, watchdog).refresh()
    finally:
        watchdog.stop()
        if own_session:
            session.close()


class _Run:
    """One refresh: the job, its deadline and what happened so far (for the give-up message)."""

    def __init__(self, job: RefreshJob, deadline: float, timing: Timing, session: requests.Session,
                 watchdog: "_Watchdog"):
        log.add_secret(job.api_key)
        self.job, self.deadline, self.timing, self.session = job, deadline, timing, session
        self.watchdog = watchdog
        self.urls = endpoints(job)
        self.started = time.monotonic()
        self.v3 = job.mode == "carto3"

    def refresh(self) -> Outcome:
        if self.job.always_batch:
            return self.batch(note="always_batch")
        try:
            answer = self.call("POST", self.urls.query, "the statement", sync_query=True, **self._query_args())
        except _StatementTimeout as exc:
            if self.v3:
                logger.warning("%s: %s; running it as a job instead", self.job.name, exc.reason)
                return self.batch(note="synchronous query timed out, moved to a job")
            logger.warning("%s: %s; running it as a Batch API job instead", self.job.name, exc.reason)
            return self.batch(note="statement timeout, moved to the Batch API")
        total = answer.body.get("total_rows")
        if not isinstance(total, int) or isinstance(total, bool):
            total = answer.rows  # CARTO 3 says no total: the rows counted as they streamed
        return Outcome("SQL API", time.monotonic() - self.started, total,
                       value=_single_value(answer.rows, answer.first_row))

    def batch(self, note: str) -> Outcome:
        created = self.call("POST", self.urls.job, "creating the batch job", job_answer=True, **self._job_args()).body
        job_id = created.get(self.urls.job_id_key)
        if not isinstance(job_id, str) or not re.match(r"^[\w.-]+$", job_id):
            raise CartoError(self.job.name, f"the Batch API answered without a usable {self.urls.job_id_key}:"
                             f" {_short(created)}")
        logger.info("%s: batch job %s created", self.job.name, job_id)
        status, current, delay = _status(created), created, self.timing.poll_initial
        while status in JOB_WAITING:
            if time.monotonic() + delay > self.deadline:
                raise CartoError(self.job.name, f"batch job {job_id} still {status} when the time budget ran out;"
                                 " it was left running (not cancelled)")
            time.sleep(delay)
            delay = min(self.timing.poll_max, delay * self.timing.poll_growth)
            try:
                current = self.call("GET", f"{self.urls.job}/{job_id}", f"polling batch job {job_id}",
                                    job_answer=True, **self._auth_args()).body
            except CartoError as exc:
                if exc.status == 400 and EXPIRED_JOB.search(exc.message):
                    raise CartoError(self.job.name, f"batch job {job_id} is gone (CARTO forgets finished jobs"
                                     " after 2 hours): its outcome is unknown", exc.status) from None
                if self.v3 and exc.status == 404:  # how long CARTO 3 keeps jobs is not documented
                    raise CartoError(self.job.name, f"batch job {job_id} is not found: its outcome is unknown"
                                     f" ({exc.message})", exc.status) from None
                raise
            status = _status(current)
        via = f"batch job {job_id}"
        if status in JOB_DONE:
            return Outcome(via, time.monotonic() - self.started, note=note)
        if status == "failed":
            reason = current.get("failed_reason") or current.get("error") or "no reason given"
            raise CartoError(self.job.name, f"{via} failed: {reason}")
        if status in ("cancelled", "canceled"):
            raise CartoError(self.job.name, f"{via} was cancelled before it finished")
        raise CartoError(self.job.name, f"{via} ended with status {status!r}: its outcome is unknown")

    def _query_args(self) -> dict:
        if self.v3:
            return {"json": {"q": self.job.sql}, **self._auth_args()}
        return {"data": {"q": self.job.sql, "api_key": self.job.api_key}}

    def _job_args(self) -> dict:
        if self.v3:
            return {"json": {"query": self.job.sql}, **self._auth_args()}
        # In the JSON body, as carto-python sends it: never in the URL.
        return {"json": {"query": self.job.sql, "api_key": self.job.api_key}}

    def _auth_args(self) -> dict:
        if self.v3:
            return {"headers": {"Authorization": f"Bearer {self.job.api_key}"}}
        # GET and DELETE have no body: HTTP Basic (user, API key) keeps the key out of the URL.
        return {"auth": (self.job.carto_user(), self.job.api_key)}

    def call(self, method: str, url: str, what: str, *, sync_query: bool = False, job_answer: bool = False,
             **kwargs) -> "_Answer":
        """One API call with its retries; what a success answered. `sync_query`: the
        synchronous statement, which may time out into a job. `job_answer`: a job object, whose
        `error` is the job's failure (read from its status), not the call's."""
        tries, self.problem = 0, None
        # CARTO 3 stops a synchronous query at one minute: wait a little longer for its answer.
        v3_sync = self.v3 and sync_query
        read_timeout = self.job.read_timeout + (self.timing.v3_sync_margin if v3_sync else 0.0)
        while True:
            tries += 1
            remaining = self.deadline - time.monotonic()
            if remaining <= 0.05 or self.watchdog.fired:
                if self.problem:
                    self.give_up(tries - 1, self.problem)
                raise CartoError(self.job.name, f"no time left for {what} (time budget used up)")
            timeout = (min(self.job.connect_timeout, remaining), min(read_timeout, remaining))
            sent, reader = time.monotonic(), _AnswerReader()
            try:
                with self.session.request(method, url, timeout=timeout, allow_redirects=False, stream=True,
                                          **kwargs) as response:
                    self.read(response, reader)
            except (requests.RequestException, _OutOfTime) as exc:
                if isinstance(exc, _OutOfTime) or self.watchdog.fired:
                    spent = time.monotonic() - sent
                    self.give_up(tries, f"{what}: the answer was still arriving when the time budget ran out"
                                 f" ({reader.size:,} bytes in {spent:.1f} s)" if reader.size else
                                 f"{what}: no complete answer when the time budget ran out ({spent:.1f} s)")
                # Not when the budget cut the read timeout short: that is our limit, not CARTO's.
                if v3_sync and _is_read_timeout(exc) and timeout[1] >= read_timeout:
                    raise _StatementTimeout(self.job.name, f"no answer within {timeout[1]:g} s (CARTO 3 stops"
                                            " synchronous queries after 1 minute)") from None
                problem = f"{what}: {_network_problem(exc)}"
                self.wait(self.backoff(tries), problem, tries)
                continue
            answer = reader.answer()
            status, body = response.status_code, answer.body
            error = body.get("error") if body is not None else None
            if 200 <= status < 300 and body is not None and \
                    (not error or job_answer and isinstance(body.get("status"), str)):
                return answer
            if 200 <= status < 300 and body is None:
                # No JSON (empty, cut short, not JSON): CARTO did not say what became of the statement.
                raise CartoError(self.job.name, f"{answer.problem}: CARTO did not say whether {what} succeeded,"
                                 " so its outcome is unknown", status)
            message, hint = _message(answer, response), body.get("hint") if body is not None else None
            hint = _cut(hint) if isinstance(hint, str) else None
            timed_out = body is not None and body.get("detail") == "datasource" or \
                any(marker in message for marker in TIMEOUT_MARKERS)
            retry_after = _seconds(response.headers.get("Retry-After")) if status == 429 else None
            if retry_after is not None:
                problem = f"{what}: rate limited (HTTP 429), CARTO asks to wait {_duration(retry_after)}"
                pause, left = max(MIN_RATE_LIMIT_WAIT, retry_after), self.deadline - time.monotonic()
                if pause > left:
                    self.give_up(tries, f"{problem}, longer than the time budget allows")
                self.wait(pause, problem, tries)
                continue
            if v3_sync and (status == 504 or not 300 <= status < 400 and
                            (timed_out or V3_TIMED_OUT.search(message))):
                raise _StatementTimeout(self.job.name, message, status, hint)
            if status == 429:
                if timed_out:
                    raise _StatementTimeout(self.job.name, message, status)
                self.wait(max(MIN_RATE_LIMIT_WAIT, self.backoff(tries)), f"{what}: HTTP 429: {message}", tries)
                continue
            if status >= 500:
                self.wait(self.backoff(tries), f"{what}: HTTP {status}: {message}", tries)
                continue
            if 200 <= status < 300 and timed_out:
                raise _StatementTimeout(self.job.name, message, status)
            meaning = None
            if 200 <= status < 300:  # a success that carries an error: CARTO's streamed rows, then the error
                meaning = "failed after rows had streamed" if answer.rows else "failed"
            if 300 <= status < 400:
                message = f"redirected to {response.headers.get('Location')!r}: set the endpoint to the final address"
            raise CartoError(self.job.name, message, status, hint, meaning)

    def read(self, response: requests.Response, reader: "_AnswerReader") -> None:
        """Feed the answer to `reader` as it arrives, what has come at a time (urllib3's read1:
        requests' iter_content waits for whole chunks); _OutOfTime if the deadline passes
        first. A socket read blocked on a server that trickles is ended by the watchdog."""
        raw = response.raw
        try:
            while chunk := raw.read1(CHUNK_BYTES, decode_content=True):  # b"": the end of the answer
                reader.feed(chunk)
                if time.monotonic() >= self.deadline:
                    raise _OutOfTime()
        # As requests' iter_content reports them.
        except u3_exceptions.ProtocolError as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from exc
        except u3_exceptions.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc) from exc
        except u3_exceptions.ReadTimeoutError as exc:
            raise requests.ConnectionError(exc) from exc
        except u3_exceptions.SSLError as exc:
            raise requests.exceptions.SSLError(exc) from exc
        except u3_exceptions.HTTPError as exc:
            raise requests.RequestException(exc) from exc
        if self.watchdog.fired:  # the watchdog's shutdown can look like the end of the answer
            raise _OutOfTime()

    def backoff(self, tries: int) -> float:
        ceiling = min(self.timing.backoff_max, self.timing.backoff_initial * 2 ** (tries - 1))
        return ceiling * random.uniform(0.5, 1.0)  # jitter: many jobs failing together spread out

    def wait(self, seconds: float, problem: str, tries: int) -> None:
        """Sleep before the next try, or give up with the last problem if that passes the deadline."""
        if seconds > self.deadline - time.monotonic():
            self.give_up(tries, problem)
        self.problem = problem
        logger.warning("%s: %s; retrying in %.1f s", self.job.name, problem, seconds)
        time.sleep(seconds)

    def give_up(self, tries: int, problem: str):
        left, spent = self.deadline - time.monotonic(), time.monotonic() - self.started
        raise CartoError(self.job.name, f"gave up after {tries} tries in {spent:.1f} s"
                         f" ({max(0.0, left):.1f} s of the time budget left): {problem}")


def _single_value(rows: int | None, first_row) -> str | None:
    """"name = value" when the answer is one row of one non-empty column (what a refresh
    function usually returns: a count)."""
    if rows == 1 and isinstance(first_row, dict) and len(first_row) == 1:
        (name, value), = first_row.items()
        if value not in (None, ""):
            return log.redact(f"{name} = {value}"[:80])
    return None


def _status(job_body: dict) -> str:
    status = job_body.get("status")
    return status.lower() if isinstance(status, str) else "unknown"


def _message(answer: "_Answer", response: requests.Response) -> str:
    """CARTO's own words: `error` is a list of messages (v2) or a string (v3)."""
    body = answer.body
    error = body.get("error") if body is not None else None
    if isinstance(error, list) and error:
        return _cut("; ".join(str(e) for e in error))
    if isinstance(error, str) and error:
        return _cut(error)
    if body is None:
        if answer.problem == "empty answer":
            return response.reason or "empty answer"
        return f"{response.reason or 'no reason'} ({answer.problem})"
    return f"{response.reason or 'unexpected answer'}: {_short(body)}"


def _cut(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + "…"


def _short(body) -> str:
    return log.redact(repr(body)[:200])


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds (delay-seconds, or an HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime  # rare: CARTO sends seconds

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, as HTTP dates are
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return seconds if seconds >= 0 and not math.isnan(seconds) else None


def _duration(seconds: float) -> str:
    """A wait for a user to read: "30 s", "15 min", "3 h", "12 days"."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days" if seconds < 1000 * 86400 else "more than 1000 days"


def _is_read_timeout(exc: requests.RequestException) -> bool:
    """No answer in time: before the headers (ReadTimeout) or while the body was read (requests
    wraps urllib3's ReadTimeoutError in a ConnectionError then)."""
    if isinstance(exc, requests.ReadTimeout):
        return True
    return isinstance(exc, requests.ConnectionError) and bool(exc.args) and isinstance(exc.args[0], ReadTimeoutError)


def _network_problem(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "no connection within the connect timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "no answer within the read timeout"
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    return f"network error: {type(exc).__name__}: {text[:200]}"


# -- answers, read as they arrive -------------------------------------------------------------

class _OutOfTime(Exception):
    """The deadline passed while an answer was being read."""


class _Answer:
    """What a refresh needs of one answer. `body`: its top-level keys, `rows` aside (values
    longer than KEEP_BYTES cut: a string to its beginning and "…", anything else None); None
    when the answer is not a JSON object, and `problem` says why. `rows`: how many `rows` it
    had (None without a `rows` array); `first_row`: the first, parsed (None if cut).
    (A plain class: a dataclass costs the Lambda's cold start a little more.)"""
    __slots__ = ("body", "rows", "first_row", "size", "problem")

    def __init__(self, body: dict | None, rows: int | None = None, first_row=None, size: int = 0,
                 problem: str | None = None):
        self.body, self.rows, self.first_row, self.size, self.problem = body, rows, first_row, size, problem


def _nested(levels: int) -> bytes:
    """A regular expression for one JSON array or object nested at most `levels` deep
    (brackets are not paired by kind: this finds where a value ends, it does not validate)."""
    atom = rb'[^"{}\[\]]++|"(?:[^"\\]++|\\.)*+"'
    value = rb"[{\[](?:" + atom + rb")*+[}\]]"
    for _ in range(levels - 1):
        value = rb"[{\[](?:" + atom + rb"|" + value + rb")*+[}\]]"
    return value


# One token: a string (group 1 is its closing quote, absent when the chunk ends inside it), a
# bracket, a comma, a colon, or the run of bytes of a number, true, false or null.
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+(")?|[\[\]{},:]|[^\s"\[\]{},:]++', re.S)
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+', re.S)
_SCALAR = re.compile(rb'[^\s"\[\]{},:]++')
# The rows of an answer, most often objects a few levels deep: many at once, at C speed.
# Compiled on first use (some milliseconds: not at import, in a Lambda's cold start).
_ROW_LEVELS = 8


@functools.cache
def _row_patterns() -> tuple[re.Pattern, re.Pattern]:
    """(one row, several rows with their commas)."""
    row = _nested(_ROW_LEVELS)
    return re.compile(row, re.S), re.compile(rb"(?:[\s,]*+(?:" + row + rb"))++", re.S)
_QUOTE, _OPEN_OBJECT, _OPEN_ARRAY, _CLOSE_OBJECT, _CLOSE_ARRAY, _COMMA, _COLON = b'"{[}],:'


class _Capture:
    """The bytes of one thing being kept, up to KEEP_BYTES: a top-level key, the value of key
    `name`, or the first row; `depth`: where it sits."""
    __slots__ = ("kind", "name", "depth", "data", "cut")

    def __init__(self, kind: str, depth: int, name: str | None = None):
        self.kind, self.name, self.depth, self.data, self.cut = kind, name, depth, bytearray(), False

    def add(self, data: bytes, start: int, end: int) -> None:
        room = KEEP_BYTES - len(self.data)
        if end - start > room:
            self.cut, end = True, start + max(0, room)
        if end > start:
            self.data += data[start:end]


class _AnswerReader:
    """Reads a JSON answer chunk by chunk and keeps only what a refresh reports: each top-level
    key's value (those of ALWAYS_KEEP, and KEEP_KEYS others at most, each cut at KEEP_BYTES),
    how many elements `rows` has, and the first of them. What it holds is bounded by those
    limits, whatever the size of the answer: its `peak` (the most bytes it kept at once) is
    there for tests to check.

    It finds where values begin and end (strings, escapes, brackets), cut anywhere by chunk
    boundaries; it does not validate what it skips, but what it keeps is parsed with `json`.
    """

    def __init__(self):
        self.size = self.peak = 0
        self.head = bytearray()
        self.depth = 0  # 1 inside the top-level object, 2 inside one of its values, ...
        self.started = self.is_object = self.done = self.trailing = False
        self.in_string = self.escape_pending = self.in_scalar = False  # a token going on in the next chunk
        self.expect_key = False  # at depth 1: a string now is a key, not a value
        self.key: str | None = None  # the top-level key whose value comes next
        self.in_rows = False
        self.rows: int | None = None
        self.first_row: tuple[bytes, bool] | None = None
        self.values: dict[str, tuple[bytes, bool]] = {}
        self.capture: _Capture | None = None
        self.capture_from = 0

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if len(self.head) < HEAD_BYTES:
            self.head += data[:HEAD_BYTES - len(self.head)]
        if self.size == 0 and data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
            data = data[3:]
        self.size += len(data)
        if self.started and not self.is_object or self.trailing:
            return  # not an object: only the head is kept, for the message
        n, pos = len(data), 0
        self.capture_from = 0
        if self.in_string:  # a string went on past the last chunk
            if self.escape_pending:
                self.escape_pending, pos = False, 1
            end = _STRING_REST.match(data, min(pos, n)).end()
            if end >= n:
                pos = n
            elif data[end] == _QUOTE:
                self.in_string, pos = False, end + 1
                self._token_end(data, pos)
            else:  # a backslash ends the chunk: it escapes the next one's first byte
                self.escape_pending, pos = True, n
        elif self.in_scalar:
            match = _SCALAR.match(data)
            pos = match.end() if match else 0
            if pos < n:
                self.in_scalar = False
                self._token_end(data, pos)
        if pos < n:
            self._tokens(data, pos, n)
        if self.capture is not None:
            self.capture.add(data, self.capture_from, n)
        kept = sum(len(raw) for raw, _ in self.values.values()) + len(self.head)
        kept += len(self.capture.data) if self.capture is not None else 0
        kept += len(self.first_row[0]) if self.first_row else 0
        self.peak = max(self.peak, kept)

    def _tokens(self, data: bytes, pos: int, n: int) -> None:
        search = _TOKEN.search
        one_row, many_rows = _row_patterns()
        while True:
            if self.in_rows and self.depth == 2 and self.capture is None and self.rows:
                match = many_rows.match(data, pos)  # whole rows: count them without a token each
                if match:
                    self.rows += len(one_row.findall(data, pos, match.end()))
                    pos = match.end()
            match = search(data, pos)
            if match is None:
                return
            start, end = match.span()
            pos, c, depth = end, data[start], self.depth
            if depth == 0:
                if self.done:
                    self.trailing = True  # more after the object: not JSON
                    return
                if not self.started:
                    self.started, self.is_object = True, c == _OPEN_OBJECT
                    if not self.is_object:
                        return
            if c == _OPEN_OBJECT or c == _OPEN_ARRAY:
                if depth == 1 and not self.expect_key:
                    self._value_start(start, c)
                elif depth == 2 and self.in_rows:
                    self._row_start(start)
                elif depth == 0:
                    self.expect_key = True
                self.depth = depth + 1
            elif c == _CLOSE_OBJECT or c == _CLOSE_ARRAY:
                self.depth = depth = depth - 1
                if depth <= 1:
                    self.in_rows = False
                    self.done = depth == 0
                if self.capture is not None and depth == self.capture.depth:
                    self._finish(data, end)
            elif c == _COMMA:
                if depth == 1:
                    self.expect_key = True
            elif c == _COLON:
                if depth == 1:
                    self.expect_key = False
            else:  # a string or a scalar
                if depth == 1:
                    if self.expect_key:
                        self.key = None
                        self.capture, self.capture_from = _Capture("key", 1), start
                    else:
                        self._value_start(start, c)
                elif depth == 2 and self.in_rows:
                    self._row_start(start)
                if c == _QUOTE:
                    if match.lastindex is None:  # no closing quote in this chunk
                        self.in_string, self.escape_pending = True, end < n
                        return
                elif end == n:
                    self.in_scalar = True
                    return
                self._token_end(data, end)

    def _value_start(self, start: int, c: int) -> None:
        key, self.key = self.key, None
        if key == "rows" and c == _OPEN_ARRAY:
            self.in_rows, self.rows, self.first_row = True, 0, None
        elif key is not None and (len(self.values) < KEEP_KEYS or key in ALWAYS_KEEP or key in self.values):
            self.capture, self.capture_from = _Capture("value", 1, key), start

    def _row_start(self, start: int) -> None:
        self.rows += 1
        if self.rows == 1:
            self.capture, self.capture_from = _Capture("row", 2), start

    def _token_end(self, data: bytes, end: int) -> None:
        if self.capture is not None and self.capture.depth == self.depth:
            self._finish(data, end)

    def _finish(self, data: bytes, end: int) -> None:
        capture, self.capture = self.capture, None
        capture.add(data, self.capture_from, end)
        if capture.kind == "key":
            key = None if capture.cut else _loads(capture.data)
            self.key = key if isinstance(key, str) else None
        elif capture.kind == "row":
            self.first_row = (bytes(capture.data), capture.cut)
        else:
            self.values[capture.name] = (bytes(capture.data), capture.cut)

    def answer(self) -> _Answer:
        """What the answer said, once it has all arrived."""
        if not self.started:
            return _Answer(None, size=self.size, problem="empty answer" if not self.head.strip() else
                           f"answer is not JSON: {self._head_text()!r}")
        if not self.is_object:
            if self.size <= HEAD_BYTES and (parsed := _loads(self.head)) is not None:
                return _Answer(None, size=self.size, problem=f"answer is JSON but not an object: {_short(parsed)}")
            return _Answer(None, size=self.size, problem=f"answer is not JSON: {self._head_text()!r}")
        if not self.done or self.in_string or self.trailing:
            what = "more after the JSON object" if self.trailing else f"the JSON ended early, after {self.size:,} bytes"
            return _Answer(None, size=self.size, problem=f"answer is not JSON ({what}): {self._head_text()!r}")
        body = {}
        for key, (raw, cut) in self.values.items():
            if cut:
                body[key] = _beginning(raw)
                continue
            try:
                body[key] = json.loads(raw)
            except ValueError:
                return _Answer(None, size=self.size, problem=f"answer is not JSON (its {key!r} is not):"
                                                             f" {self._head_text()!r}")
        first_row = None
        if self.first_row is not None and not self.first_row[1]:
            first_row = _loads(self.first_row[0])
        return _Answer(body, self.rows, first_row, self.size)

    def _head_text(self) -> str:
        return log.redact(" ".join(self.head.decode("utf-8", "replace").split())[:200])


def _loads(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


def _beginning(raw: bytes):
    """What can be read of a value cut at KEEP_BYTES: the beginning of a string (or of a list's
    first string, as v2's `error` is), else None."""
    text = raw.decode("utf-8", "ignore").lstrip()
    if text.startswith("["):
        found = _beginning(text[1:].encode())
        return [found] if found is not None else None
    if not text.startswith('"'):
        return None
    for trim in range(7):  # a cut escape (\u12) or a backslash: drop it
        try:
            value = json.loads(text[:len(text) - trim] + '"')
        except ValueError:
            continue
        if not isinstance(value, str):
            return None
        if value and "\ud800" <= value[-1] <= "\udbff":  # half of a pair the cut split
            value = value[:-1]
        return value + "…"
    return None


# -- the deadline, down to the socket -----------------------------------------------------------

class _Watchdog:
    """Ends the run's connections when its deadline passes. Requests' read timeout bounds each
    socket read, not their sum: a server that sends a byte within every read timeout (in its
    headers or its body) would keep a read going past any deadline. The sockets are registered
    as they connect; at the deadline a timer shuts them down, which ends a blocked read at once."""

    def __init__(self, deadline: float):
        self.fired = False
        self.sockets: weakref.WeakSet = weakref.WeakSet()
        self.lock = threading.Lock()
        self.timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.fire)
        self.timer.daemon = True
        self.timer.start()

    def register(self, sock) -> None:
        with self.lock:
            self.sockets.add(sock)
            fired = self.fired
        if fired:
            _shutdown(sock)

    def fire(self) -> None:
        with self.lock:
            self.fired = True
            sockets = list(self.sockets)
        for sock in sockets:
            _shutdown(sock)

    def stop(self) -> None:
        self.timer.cancel()


def _shutdown(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # closed already, or never connected
        pass


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections register their sockets with a _Watchdog."""

    def __init__(self, watchdog: _Watchdog):
        self.watchdog = watchdog
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.watchdog)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme is u3_poolmanager.pool_classes_by_scheme:  # not SOCKS: its own
            manager.pool_classes_by_scheme = _pool_classes(self.watchdog)
        return manager


def _pool_classes(watchdog: _Watchdog) -> dict:
    def watched(base):
        class Watched(base):
            def _new_conn(self):
                sock = super()._new_conn()
                watchdog.register(sock)  # the plain socket: covers the time until TLS wraps it
                return sock

            def connect(self):
                super().connect()
                if self.sock is not None:
                    watchdog.register(self.sock)  # with TLS, a new socket object on the same connection
        return Watched

    return {"http": type("HTTPConnectionPool", (u3_pool.HTTPConnectionPool,),
                         {"ConnectionCls": watched(u3_connection.HTTPConnection)}),
            "https": type("HTTPSConnectionPool", (u3_pool.HTTPSConnectionPool,),
                          {"ConnectionCls": watched(u3_connection.HTTPSConnection)})}
