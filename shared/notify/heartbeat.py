"""Heartbeats: pings to a dead-man's switch (Healthchecks.io's convention, also Cronitor's, Better
Stack's and a self-hosted Healthchecks'), so that a run that never happens is heard about too.

    HEARTBEAT_URL=https://hc-ping.com/<uuid>     every run of any kind: <url>/start when it starts,
                                                 <url> when every job succeeded, <url>/fail else
    heartbeat = "<url>"  (a job's key)           that job alone: <url>, or <url>/fail

The service alerts its own channels (mail, SMS, Slack...) when a ping says fail, and when the
pings stop: the scheduler skipped, an entry was deleted, the app was suspended. A finishing
ping carries the run's result lines (redacted, at most 10 kB) as its body.

A ping never holds a run past its deadline (a short timeout, two retries, within the time left),
never fails a run, and never shows its URL: anyone who has it can ping, so it is a secret,
registered for redaction where it is read.
"""

import logging
import time

from shared.core import log
from shared.core.text import one_line

logger = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds per try
TRIES = 3
MAX_BODY = 10_000  # bytes of result lines sent with a finishing ping
RESERVE = 0.5  # seconds of a run's time a ping never takes

START, SUCCESS, FAIL = "/start", "", "/fail"


def register(url: str | None) -> None:
    """A heartbeat URL is a secret: its path is the check's key."""
    if url:
        log.add_secret(url)
        log.add_secret(url.rstrip("/").rsplit("/", 1)[-1])


def ping(url: str | None, signal: str, body: str = "", deadline: float | None = None, label: str = "run") -> bool:
    """POST `url` + `signal` (START, SUCCESS or FAIL) with `body`; True when the service
    answered 2xx. Never raises; gives up when `deadline` (time.monotonic()) is near."""
    if not url:
        return False
    register(url)
    import urllib3  # here: most runs have no heartbeat

    from shared.core.deadline import watching

    data = log.redact(body).encode("utf-8", "replace")[:MAX_BODY]
    target = url.rstrip("/") + signal
    what = f"{label} heartbeat {signal.lstrip('/') or 'success'}"
    for attempt in range(TRIES):
        left = None if deadline is None else deadline - time.monotonic() - RESERVE
        if left is not None and left <= 0.1:
            logger.warning("%s not sent: the run's time ran out", what)
            return False
        seconds = TIMEOUT if left is None else min(TIMEOUT, left)
        try:
            with watching(time.monotonic() + seconds) as watch:  # the whole exchange, however it trickles
                answer = _pool().request("POST", target, body=data,
                                         headers={"Content-Type": "text/plain; charset=utf-8"},
                                         timeout=urllib3.Timeout(total=seconds), retries=False)
            if watch.expired:  # cut short: what was read of the answer proves nothing
                problem = f"no complete answer within {seconds:.1f} s"
            elif 200 <= answer.status < 300:
                logger.debug("%s sent", what)
                return True
            else:
                problem = f"HTTP {answer.status}"
        except Exception as exc:  # noqa: BLE001 - a ping must never fail the run
            problem = one_line(f"{type(exc).__name__}: {exc}", 200)
        logger.debug("%s: try %d failed: %s", what, attempt + 1, problem)
        if attempt + 1 < TRIES:  # a short back-off, never more than a quarter of the time left
            pause = 0.5 * (attempt + 1)
            if deadline is not None:
                pause = min(pause, max(0.0, (deadline - time.monotonic() - RESERVE) / 4))
            time.sleep(pause)
    logger.warning("%s not delivered: %s", what, problem)
    return False


_POOL = None


def _pool():
    global _POOL
    if _POOL is None:
        from shared.core import http

        _POOL = http.pool_manager(num_pools=4, maxsize=2)
    return _POOL
