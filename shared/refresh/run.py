"""One refresh run: each job's statement (default `SELECT process_data()`) through CARTO's SQL
API or straight on PostgreSQL, one Result per job.

Jobs run one after another: they usually hit the same CARTO account, whose rate limit is per
user. With DATABASE_URL set, each run is recorded (shared/refresh/store.py) before CARTO is
called, so a redelivered scheduled event is a `duplicate` that calls nothing, and the failure
streak drives the same alerts as scrape's (shared/notify/messages.py). Without a database the
refreshes still run; history is off, and each failure alerts (there is no streak to count).
"""

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone

from shared.core import db
from shared.core.result import DUPLICATE, ERROR, Result
from shared.notify import messages
from shared.notify.outbox import Outbox
from shared.refresh import carto, postgres, store
from shared.refresh.answer import one_line
from shared.refresh.job import RefreshJob

logger = logging.getLogger(__name__)
LEASE_MARGIN = 60  # seconds past a job's time budget after which its unfinished run counts as dead
# Seconds to connect to the history database (not db.CONNECT_TIMEOUT's 30): a database that
# accepts and never answers must not hold a refresh, which runs without its record anyway.
HISTORY_CONNECT_TIMEOUT = 10.0
FINISH_GRACE = 5.0  # seconds past the run's deadline that recording its end may take
_said_history_is_off = False


def run(jobs: list[RefreshJob], run_key: str | None = None, deadline: float | None = None,
        timing: carto.Timing = carto.Timing(), prepare: Callable | None = None) -> list[Result]:
    """Run each job within its own time_budget and the run's `deadline` (monotonic).
    `prepare(con)` brings the schema of the run history up to date (the entry adapter passes it)."""
    with Outbox(deadline) as outbox:
        results = [run_one(job, run_key, deadline, timing, outbox, prepare) for job in jobs]
        notices = outbox.close()  # waits for the alerts, never past the deadline
    return [replace(r, notice="; ".join(n for n in (r.notice, notices.get(r.name)) if n) or None) for r in results]


def run_one(job: RefreshJob, run_key: str | None, deadline: float | None, timing: carto.Timing,
            outbox: Outbox, prepare: Callable | None = None) -> Result:
    started = time.monotonic()
    job_deadline = started + job.time_budget if deadline is None else min(started + job.time_budget, deadline)
    recorder = _Recorder(job, run_key, prepare)
    if not recorder.claim(job_deadline):
        return Result(job.name, DUPLICATE, recorder.duplicate_reason, seconds=time.monotonic() - started)
    try:
        outcome = refresh(job, job_deadline, timing)
    except _Failed as exc:
        reason, outcome = exc.reason, None
    streak = recorder.finish(outcome, None if outcome else reason, deadline)
    if outcome:
        result = Result(job.name, "ok", outcome.summary())
    else:
        result = Result(job.name, ERROR, reason, retry=True)
    now = datetime.now(timezone.utc).isoformat()
    event = messages.Check(result.outcome, now, error=None if outcome else reason,
                         streak_before=streak.before, streak=streak.after, unit="runs")
    outbox.post(job, event)
    return replace(result, notice=recorder.notice, seconds=time.monotonic() - started)


class _Failed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def refresh(job: RefreshJob, deadline: float, timing: carto.Timing = carto.Timing()):
    """Run the job's statement once (with its retries); an Outcome, or _Failed with the reason."""
    try:
        if job.mode == "postgres":
            return postgres.refresh(job, deadline, timing)
        return carto.refresh(job, deadline, timing=timing)
    except carto.CartoError as exc:
        raise _Failed(exc.reason) from None
    except (postgres.PostgresRefreshError, db.DatabaseUnavailable, db.DatabaseConfigError) as exc:
        raise _Failed(one_line(str(exc), carto.REASON_CHARS)) from None
    except Exception as exc:  # one job's bug must not hide the others' results
        logger.exception("%s: unexpected failure", job.name)
        raise _Failed(one_line(f"unexpected {type(exc).__name__}: {exc}", carto.REASON_CHARS)) from None


class _Recorder:
    """The run's row in the store, when there is a database; a refresh never fails for want
    of one (its notice says what was not recorded)."""

    def __init__(self, job: RefreshJob, run_key: str | None, prepare: Callable | None):
        self.job, self.run_key, self.prepare = job, run_key, prepare
        self.run_id = None
        self.notice = None
        self.duplicate_reason = None

    def claim(self, deadline: float) -> bool:
        """False when this run is a duplicate of one done or under way. Connecting waits no
        longer than HISTORY_CONNECT_TIMEOUT, nor than a quarter of what is left before the
        job's `deadline`."""
        global _said_history_is_off
        if not os.environ.get("DATABASE_URL"):
            if not _said_history_is_off:
                logger.warning("DATABASE_URL is not set: refresh history is off (no duplicate detection,"
                               " no failure streaks: every failure alerts)")
                _said_history_is_off = True
            return True
        try:
            # A quarter of the budget at most: the refresh matters more than its record.
            timeout = max(0.5, min(HISTORY_CONNECT_TIMEOUT, (deadline - time.monotonic()) / 4))
            with db.connection(timeout=timeout) as con:
                if self.prepare is not None:
                    self.prepare(con)
                claim = store.claim(con, self.job.name, self.run_key, datetime.now(timezone.utc),
                                      self.job.time_budget + LEASE_MARGIN)
        except Exception as exc:  # the refresh matters more than its record
            self._lost(exc)
            return True
        if claim.run_id is None:
            state = "done" if claim.state == "ok" else f"under way since {claim.started_at:%Y-%m-%d %H:%M:%S} UTC"
            self.duplicate_reason = f"run {self.run_key} already {state}"
            return False
        self.run_id = claim.run_id
        return True

    def finish(self, outcome, error: str | None, deadline: float | None = None) -> store.Streak:
        """Record the end of the run; the job's failure streak before and after it. Without a
        record, a failure counts as reaching the job's alert_after. Connecting may take a few
        seconds past the run's `deadline` (Lambda keeps 10 s for this), no more."""
        unknown = store.Streak(self.job.alert_after - 1, self.job.alert_after) if error else store.Streak(0, 0)
        if self.run_id is None:
            return unknown
        try:
            timeout = HISTORY_CONNECT_TIMEOUT
            if deadline is not None:
                timeout = max(1.0, min(timeout, deadline + FINISH_GRACE - time.monotonic()))
            with db.connection(timeout=timeout) as con:
                return store.finish(con, self.run_id, datetime.now(timezone.utc), error is None,
                                      outcome.via if outcome else None, outcome.total_rows if outcome else None,
                                      error)
        except Exception as exc:
            self._lost(exc)
            return unknown

    def _lost(self, exc: Exception) -> None:
        reason = one_line(str(exc) if isinstance(exc, db.DatabaseUnavailable) else f"{type(exc).__name__}: {exc}", 500)
        logger.warning("%s: refresh history not recorded: %s", self.job.name, reason)
        self.notice = f"history not recorded: {reason}"
