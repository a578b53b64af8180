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

Answers are read as they arrive (stream=True) and never held whole: answer.AnswerReader counts
the rows and keeps only what a refresh reports (the first row, `total_rows`, `error`, `hint`...),
each value cut at KEEP_BYTES, so memory does not grow with what CARTO sends. The deadline
bounds the whole exchange: the watchdog shuts down the run's sockets when it passes (shared.core.deadline), so
an answer that trickles in (a few bytes within each read timeout) ends there too.
"""

import base64
import logging
import math
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import requests
from urllib3 import exceptions as u3_exceptions
from urllib3.exceptions import ReadTimeoutError

from shared.core import http, log
from shared.core.deadline import Watch, watching
from shared.core.names import USER_AGENT
from shared.refresh.answer import CHUNK_BYTES, MESSAGE_CHARS, Answer, AnswerReader, one_line, short
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
# A reason holds at most CARTO's message and its hint (MESSAGE_CHARS each) and our words.
REASON_CHARS = 2 * MESSAGE_CHARS + 500


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
        # One line, whatever CARTO sent (line breaks, control characters, megabytes), redacted
        # before it is cut.
        return one_line(head + self.message + tail, REASON_CHARS)


class _StatementTimeout(CartoError):
    """CARTO stopped the synchronous statement at its limit (v2: the plan's; CARTO 3: one
    minute): go to the Batch API (v2) or a job (CARTO 3)."""


class _OutOfTime(Exception):
    """The deadline passed while an answer was being read."""


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
    adapter = http.requests_adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    try:
        with watching(deadline) as watch:
            return _Run(job, deadline, timing, session, watch).refresh()
    finally:
        if own_session:
            session.close()


class _Run:
    """One refresh: the job, its deadline and what happened so far (for the give-up message)."""

    def __init__(self, job: RefreshJob, deadline: float, timing: Timing, session: requests.Session,
                 watch: Watch):
        log.add_secret(job.api_key)
        if job.mode == "carto" and job.api_key:  # as the Batch API's polls send it, should a server echo that
            log.add_secret(base64.b64encode(f"{job.carto_user()}:{job.api_key}".encode()).decode())
        self.job, self.deadline, self.timing, self.session = job, deadline, timing, session
        self.watch = watch
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
                             f" {short(created)}")
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
            raise CartoError(self.job.name, f"{via} failed: {_cut(reason if isinstance(reason, str) else repr(reason))}")
        if status in ("cancelled", "canceled"):
            raise CartoError(self.job.name, f"{via} was cancelled before it finished")
        raise CartoError(self.job.name, f"{via} ended with status {short(status)}: its outcome is unknown")

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
             **kwargs) -> Answer:
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
            if remaining <= 0.05 or self.watch.expired:
                if self.problem:
                    self.give_up(tries - 1, self.problem)
                raise CartoError(self.job.name, f"no time left for {what} (time budget used up)")
            timeout = (min(self.job.connect_timeout, remaining), min(read_timeout, remaining))
            sent, reader = time.monotonic(), AnswerReader()
            try:
                with self.session.request(method, url, timeout=timeout, allow_redirects=False, stream=True,
                                          **kwargs) as response:
                    self.read(response, reader)
            except (requests.RequestException, _OutOfTime) as exc:
                if isinstance(exc, _OutOfTime) or self.watch.expired:
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
                if pause > left:  # a wait shorter than asked (the 1 s at least) is not "longer than asked"
                    self.give_up(tries, f"{problem}, longer than the time budget allows" if retry_after > left
                                 else f"{problem}; no time left for another try")
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
                location = response.headers.get("Location")
                message = (f"redirected to {one_line(location, 200)!r}: set the endpoint to the final address"
                           if location else f"{response.reason or 'redirect'} without a Location: not an answer of"
                           " CARTO's SQL API")
            raise CartoError(self.job.name, message, status, hint, meaning)

    def read(self, response: requests.Response, reader: AnswerReader) -> None:
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
        if self.watch.expired:  # the watchdog's shutdown can look like the end of the answer
            raise _OutOfTime()

    def backoff(self, tries: int) -> float:
        ceiling = min(self.timing.backoff_max, self.timing.backoff_initial * 2 ** (tries - 1))
        return ceiling * random.uniform(0.5, 1.0)  # jitter: many jobs failing together spread out

    def wait(self, seconds: float, problem: str, tries: int) -> None:
        """Sleep before the next try, or give up with the last problem if that passes the deadline."""
        if seconds > self.deadline - time.monotonic():
            self.give_up(tries, problem)
        self.problem = problem
        logger.warning("%s: %s; retrying in %.1f s", self.job.name, one_line(problem), seconds)
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
            return one_line(f"{name} = {value}", 80)  # redacted, then cut
    return None


def _status(job_body: dict) -> str:
    status = job_body.get("status")
    return status.lower() if isinstance(status, str) else "unknown"


def _message(answer: Answer, response: requests.Response) -> str:
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
    return f"{response.reason or 'unexpected answer'}: {short(body)}"


def _cut(text: str) -> str:
    return one_line(text, MESSAGE_CHARS)  # redacted before it is cut


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
    return f"network error: {type(exc).__name__}: {one_line(text, 200)}"

