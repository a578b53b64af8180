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
"""

import logging
import random
import re
import time
from dataclasses import dataclass

import requests
from urllib3.exceptions import ReadTimeoutError

from shared import USER_AGENT
from shared.platform import log
from shared.refresh.job import RefreshJob
from shared.refresh.outcome import Outcome

logger = logging.getLogger(__name__)

# What a status means to a user reading one line; CARTO's own message follows it.
STATUS_MEANING = {
    200: "failed after rows had streamed",
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

    def __init__(self, job: str, message: str, status: int | None = None, hint: str | None = None):
        self.job, self.message, self.status, self.hint = job, message, status, hint
        super().__init__(f"{job}: {self.reason}")

    @property
    def reason(self) -> str:
        head = ""
        if self.status is not None:
            meaning = STATUS_MEANING.get(self.status)
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
    `deadline` is a time.monotonic() value that no wait or request goes past."""
    own_session = session is None
    session = session or requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    try:
        return _Run(job, deadline, timing, session).refresh()
    finally:
        if own_session:
            session.close()


class _Run:
    """One refresh: the job, its deadline and what happened so far (for the give-up message)."""

    def __init__(self, job: RefreshJob, deadline: float, timing: Timing, session: requests.Session):
        log.add_secret(job.api_key)
        self.job, self.deadline, self.timing, self.session = job, deadline, timing, session
        self.urls = endpoints(job)
        self.started = time.monotonic()
        self.v3 = job.mode == "carto3"

    def refresh(self) -> Outcome:
        if self.job.always_batch:
            return self.batch(note="always_batch")
        try:
            body = self.call("POST", self.urls.query, "the statement", sync_query=True, **self._query_args())
        except _StatementTimeout as exc:
            if self.v3:
                logger.warning("%s: %s; running it as a job instead", self.job.name, exc.reason)
                return self.batch(note="synchronous query timed out, moved to a job")
            logger.warning("%s: %s; running it as a Batch API job instead", self.job.name, exc.reason)
            return self.batch(note="statement timeout, moved to the Batch API")
        total = body.get("total_rows")
        return Outcome("SQL API", time.monotonic() - self.started, total if isinstance(total, int) else None,
                       value=_single_value(body.get("rows")))

    def batch(self, note: str) -> Outcome:
        created = self.call("POST", self.urls.job, "creating the batch job", job_answer=True, **self._job_args())
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
                                    job_answer=True, **self._auth_args())
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
             **kwargs) -> dict:
        """One API call with its retries; the parsed JSON of a success. `sync_query`: the
        synchronous statement, which may time out into a job. `job_answer`: a job object, whose
        `error` is the job's failure (read from its status), not the call's."""
        tries, self.problem = 0, None
        # CARTO 3 stops a synchronous query at one minute: wait a little longer for its answer.
        v3_sync = self.v3 and sync_query
        read_timeout = self.job.read_timeout + (self.timing.v3_sync_margin if v3_sync else 0.0)
        while True:
            tries += 1
            remaining = self.deadline - time.monotonic()
            if remaining <= 0.05:
                if self.problem:
                    self.give_up(tries - 1, self.problem)
                raise CartoError(self.job.name, f"no time left for {what} (time budget used up)")
            timeout = (min(self.job.connect_timeout, remaining), min(read_timeout, remaining))
            try:
                response = self.session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
            except requests.RequestException as exc:
                # Not when the budget cut the read timeout short: that is our limit, not CARTO's.
                if v3_sync and _is_read_timeout(exc) and timeout[1] >= read_timeout:
                    raise _StatementTimeout(self.job.name, f"no answer within {timeout[1]:g} s (CARTO 3 stops"
                                            " synchronous queries after 1 minute)") from None
                problem = f"{what}: {_network_problem(exc)}"
                self.wait(self.backoff(tries), problem, tries)
                continue
            status, body = response.status_code, _json(response)
            error = body.get("error") if isinstance(body, dict) else None
            if 200 <= status < 300 and isinstance(body, dict) and \
                    (not error or job_answer and isinstance(body.get("status"), str)):
                return body
            message, hint = _message(body, response), body.get("hint") if isinstance(body, dict) else None
            hint = hint if isinstance(hint, str) else None
            timed_out = isinstance(body, dict) and body.get("detail") == "datasource" or \
                any(marker in message for marker in TIMEOUT_MARKERS)
            retry_after = _seconds(response.headers.get("Retry-After")) if status == 429 else None
            if retry_after is not None:
                self.wait(retry_after, f"{what}: rate limited (HTTP 429), CARTO asks to wait {retry_after:g} s",
                          tries)
                continue
            if v3_sync and (status == 504 or not 300 <= status < 400 and
                            (timed_out or V3_TIMED_OUT.search(message))):
                raise _StatementTimeout(self.job.name, message, status, hint)
            if status == 429:
                if timed_out:
                    raise _StatementTimeout(self.job.name, message, status)
                self.wait(self.backoff(tries), f"{what}: HTTP 429: {message}", tries)
                continue
            if status >= 500:
                self.wait(self.backoff(tries), f"{what}: HTTP {status}: {message}", tries)
                continue
            if 200 <= status < 300 and timed_out:
                raise _StatementTimeout(self.job.name, message, status)
            if 300 <= status < 400:
                message = f"redirected to {response.headers.get('Location')!r}: set the endpoint to the final address"
            raise CartoError(self.job.name, message, status, hint)

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


def _single_value(rows) -> str | None:
    """"name = value" when the answer is one row of one non-empty column (what a refresh
    function usually returns: a count)."""
    if isinstance(rows, list) and len(rows) == 1 and isinstance(rows[0], dict) and len(rows[0]) == 1:
        (name, value), = rows[0].items()
        if value not in (None, ""):
            return log.redact(f"{name} = {value}"[:80])
    return None


def _status(job_body: dict) -> str:
    status = job_body.get("status")
    return status.lower() if isinstance(status, str) else "unknown"


def _json(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        return None


def _message(body, response: requests.Response) -> str:
    """CARTO's own words: `error` is a list of messages (v2) or a string (v3)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, list) and error:
        return "; ".join(str(e) for e in error)
    if isinstance(error, str) and error:
        return error
    if body is None:
        text = " ".join(response.text.split())[:200]
        return f"{response.reason or 'no reason'} (answer is not JSON: {text!r})" if text else (response.reason or "empty answer")
    return f"{response.reason or 'unexpected answer'}: {_short(body)}"


def _short(body) -> str:
    return log.redact(repr(body)[:200])


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is not used by CARTO, treat it as absent."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


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
