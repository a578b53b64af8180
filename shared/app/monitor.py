"""What a run tells people besides its result lines, so that no failure around the jobs goes
unheard (README, "When something goes wrong"):

- heartbeats: $HEARTBEAT_URL is pinged at the start and the end of every run of any kind (/fail
  when a job failed, a notification could not be sent, or the run failed as a whole), and a
  job's own `heartbeat` URL after its run (shared/notify/heartbeat.py);
- run-level alerts: a run that fails as a whole (the jobs file, the database, a bug) sends one
  message to $NOTIFY_URLS per failing streak, and one when runs succeed again; the streak is
  kept in the database (shared/app/store.py). When the database itself is the cause, no streak
  can be kept: then only a run starting in the first ten minutes of a UTC hour alerts (at most
  one message an hour for a 10-minute schedule), and every run of a slower one;
- overdue jobs: after each run, every job of the jobs file (all kinds) whose runs stopped or never
  began gets one alert through its own channels, and one recovery when it runs again.

Nothing here ever fails a run or holds it past its deadline: each step checks the time left, and
any error of its own is logged as one line.
"""

import logging
import os
import time
from datetime import datetime, timedelta, timezone

from shared.app import config, schema
from shared.app import store as app_store
from shared.app.kinds import KINDS
from shared.core import db, log
from shared.core.errors import ConfigError, JobError
from shared.core.kind import Kind
from shared.core.result import Result
from shared.core.schedule import EVERY
from shared.core.text import one_line, plural
from shared.notify import heartbeat, messages

logger = logging.getLogger("monitor")

SEND_TIMEOUT = 10.0  # seconds per message sent from here
NEEDS = 3.0  # seconds a step needs before the deadline, else it waits for the next run
HOURLY_WINDOW = 10  # minutes: with no database, runs starting in the first ten of an hour alert
OVERDUE_MARGIN = timedelta(minutes=30)  # at most: half an interval for shorter schedules


def heartbeat_url() -> str | None:
    url = os.environ.get("HEARTBEAT_URL") or None
    heartbeat.register(url)
    return url


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _has_time(deadline: float | None) -> bool:
    left = _left(deadline)
    return left is None or left > NEEDS


def _connection(deadline: float | None):
    """A connection for the monitor's own bookkeeping: never waiting longer than 5 s to connect."""
    left = _left(deadline)
    return db.connection(timeout=5.0 if left is None else max(0.5, min(5.0, left)))


def _send(urls, message: messages.Message, deadline: float | None) -> list[str]:
    left = _left(deadline)
    timeout = SEND_TIMEOUT if left is None else max(1.0, min(SEND_TIMEOUT, left - 1))
    return messages.send(urls, message, timeout)


class RunMonitor:
    """One run's heartbeats and run-level alerts: `start()`, then `finished(results)` or
    `failed(exc)`."""

    def __init__(self, kind: Kind, deadline: float | None, frequent: bool = True):
        self.kind, self.deadline, self.frequent = kind, deadline, frequent
        self.url = heartbeat_url()

    def start(self) -> None:
        heartbeat.ping(self.url, heartbeat.START, deadline=self.deadline, label=self.kind.name)

    def finished(self, results: list[Result]) -> None:
        try:
            failed = any(r.failed or r.notice for r in results)  # a notice: a notification that failed
            body = "\n".join(one_line(r.line(), 500) for r in results)
            heartbeat.ping(self.url, heartbeat.FAIL if failed else heartbeat.SUCCESS, body, self.deadline,
                           self.kind.name)
            notices, urls = any(r.notice for r in results), messages.global_urls()
            if not _has_time(self.deadline) or not (notices or urls or config.has_jobs_file()):
                return
            with _connection(self.deadline) as con:  # one connection for all the bookkeeping below
                if notices:
                    self._record_notices(con, results)
                if urls:
                    self._recovered(con)
                if _has_time(self.deadline):
                    check_overdue(con, self.deadline)
        except Exception as exc:  # noqa: BLE001 - telling people must never fail the run
            logger.warning("after the %s run: %s", self.kind.name, one_line(exc, 300))

    def _record_notices(self, con, results: list[Result]) -> None:
        """Notifications that could not be delivered, kept with their job for the report."""
        for result in results:
            if result.notice:
                app_store.notification_failed(con, self.kind.name, result.name, one_line(result.notice, 500))

    def failed(self, exc: BaseException) -> None:
        """The run failed before or around its jobs: /fail with the cause, and the run-level alert."""
        try:
            cause = one_line(exc if isinstance(exc, JobError) else f"unexpected {type(exc).__name__}: {exc}", 1000)
            heartbeat.ping(self.url, heartbeat.FAIL, f"error: {cause}", self.deadline, self.kind.name)
            urls = messages.global_urls()
            if urls and _has_time(self.deadline):
                self._alert(urls, exc, cause)
        except Exception as problem:  # noqa: BLE001 - the run's own error is the one to report
            logger.warning("telling about the failed %s run: %s", self.kind.name, one_line(problem, 300))

    def _alert(self, urls, exc: BaseException, cause: str) -> None:
        if not isinstance(exc, (db.DatabaseUnavailable, db.DatabaseRefused)):
            try:
                with _connection(self.deadline) as con:
                    schema.ensure(con)  # a first run may fail before its kind made the tables
                    streak = app_store.run_failed(con, self.kind.name, cause)
                    if streak[1]:
                        self._send_alert(urls, cause, exc, streak[0])
                        app_store.run_alerted(con, self.kind.name)
                    return
            except Exception as problem:  # noqa: BLE001 - no streak then: the hourly rule below
                logger.debug("no run streak kept: %s", one_line(problem, 200))
        now = datetime.now(timezone.utc)
        if not self.frequent or now.minute < HOURLY_WINDOW:
            self._send_alert(urls, cause, exc, None)
        else:
            logger.info("%s run failed; its alert waits for a run in the first %d minutes of an hour (no database"
                        " to keep the streak)", self.kind.name, HOURLY_WINDOW)

    def _send_alert(self, urls, cause: str, exc: BaseException, runs: int | None) -> None:
        streak = f" ({plural(runs, 'run')} in a row so far)" if runs else ""
        body = (f"Every {self.kind.name} run fails before or around its jobs{streak}: nothing is checked or"
                f" refreshed until this is fixed.\n\nCause: {cause}\n\nWhat to do: {what_to_do(exc)}")
        failures = _send(urls, messages.Message(f"{self.kind.name} runs are failing", log.redact(body),
                                                messages.FAILURE), self.deadline)
        for failure in failures:
            logger.warning("run-level alert not delivered: %s", failure)

    def _recovered(self, con) -> None:
        try:
            ended = app_store.run_succeeded(con, self.kind.name)
        except Exception as exc:  # noqa: BLE001 - no table yet: no streak either
            logger.debug("no run streak to end: %s", one_line(exc, 200))
            return
        if ended and ended[2]:
            since, runs, _ = ended
            _send(messages.global_urls(), messages.Message(
                f"{self.kind.name} runs work again",
                f"{self.kind.name} runs work again after {plural(runs, 'failed run')} since"
                f" {since:%Y-%m-%d %H:%M} UTC.", messages.SUCCESS), self.deadline)


def what_to_do(exc: BaseException) -> str:
    if isinstance(exc, db.DatabaseRefused):
        return "the database refused the run: the reason says why (privileges, a read-only replica, a table in the way)."
    if isinstance(exc, db.DatabaseUnavailable):
        return ("check DATABASE_URL and the database itself (down, out of connections, over its plan, being"
                " maintained); runs go on by themselves once it answers.")
    if isinstance(exc, ConfigError):
        return "fix what the cause names (the jobs file, a setting); the next run goes on by itself."
    return "an unexpected error: see the run's logs (heroku logs, or CloudWatch) and report it."


# --- job heartbeats ----------------------------------------------------------------------------

def job_heartbeats(jobs: list, results: list[Result], deadline: float | None) -> None:
    """Each job's own `heartbeat` URL: its success, or /fail."""
    by_name = {r.name: r for r in results}
    for job in jobs:
        url = getattr(job, "heartbeat", None)
        result = by_name.get(job.name)
        if url and result is not None and _has_time(deadline):
            failed = result.failed or bool(result.notice)
            heartbeat.ping(url, heartbeat.FAIL if failed else heartbeat.SUCCESS, one_line(result.line(), 1000),
                           deadline, job.name)


# --- overdue jobs ------------------------------------------------------------------------------

def interval_of(entry) -> int | None:
    """Seconds between a job's runs; None when its schedule has no fixed interval (cron)."""
    try:
        schedule = config.entry_schedule(entry)
    except ConfigError:
        return None
    return EVERY.get(schedule.every) if not schedule.cron else None


def overdue_limit(interval: int) -> timedelta:
    """Twice the interval, plus a margin of at most half an interval."""
    return timedelta(seconds=2 * interval) + min(OVERDUE_MARGIN, timedelta(seconds=interval / 2))


def check_overdue(con, deadline: float | None) -> None:
    """Every job of the jobs file, all kinds: alert once for one whose runs stopped or never
    began, and once when it runs again."""
    if not config.has_jobs_file():
        return
    entries = [e for e in config.entries() if e.kind in KINDS]
    timed = [(e, interval) for e in entries if (interval := interval_of(e))]
    if not timed:
        return
    watch = app_store.watched(con, [(e.kind, e.name) for e, _ in timed])
    last: dict = {}
    for kind in {e.kind for e, _ in timed}:
        if KINDS[kind].last_runs:
            last.update({(kind, name): at for name, at in
                         KINDS[kind].last_runs(con, [e.name for e, _ in timed if e.kind == kind]).items()})
    now = con.run("SELECT now()")[0][0]
    for entry, interval in timed:
        if not _has_time(deadline):
            return
        first_seen, since, alerted = watch[(entry.kind, entry.name)]
        ran = last.get((entry.kind, entry.name))
        limit = overdue_limit(interval)
        late = now - ran > limit if ran else now - first_seen > timedelta(seconds=2 * interval)
        if late and not alerted and app_store.mark_overdue(con, entry.kind, entry.name):
            _tell_overdue(entry, interval, ran, first_seen, deadline)
        elif not late and since is not None and app_store.mark_running(con, entry.kind, entry.name):
            _tell(entry, messages.Message(f"{entry.name} runs again",
                                          f"{entry.name} ([[{entry.kind}]]) runs again: last run"
                                          f" {ran:%Y-%m-%d %H:%M} UTC, overdue since {since:%Y-%m-%d %H:%M} UTC.",
                                          messages.SUCCESS), deadline)


def _tell_overdue(entry, interval: int, ran, first_seen, deadline) -> None:
    schedule = config.entry_schedule(entry)
    when = (f"it last ran {ran:%Y-%m-%d %H:%M} UTC" if ran else
            f"it has never run since it appeared in the jobs file ({first_seen:%Y-%m-%d %H:%M} UTC)")
    cause = ("its scheduler entry stopped (Heroku Scheduler skipped or the entry was deleted, the app is"
             " suspended, the AWS schedule is disabled)" if ran else
             "no scheduler entry runs it yet: on Heroku, run `make heroku-schedule` and add the entry it prints for"
             " this schedule; on AWS, `make deploy-aws`")
    try:
        described = schedule.heroku_frequency()
    except ValueError:  # a schedule only AWS runs
        described = schedule.aws_expression()
    text = (f"{entry.name} ([[{entry.kind}]], {described})"
            f" is overdue: {when}, more than {plural(round(overdue_limit(interval).total_seconds() / 60), 'minute')}"
            f" ago. Likely cause: {cause}.")
    _tell(entry, messages.Message(f"{entry.name} is overdue", text, messages.FAILURE), deadline)


def _tell(entry, message: messages.Message, deadline) -> None:
    """Through the job's own channels (its `notify`, else $NOTIFY_URLS)."""
    try:
        urls = messages.urls_for(config.build(entry))
    except ConfigError:  # the job cannot be built here (a ${VAR} of another platform): the global ones
        urls = messages.global_urls()
    for failure in _send(urls, messages.Message(message.title, log.redact(message.body), message.type), deadline):
        logger.warning("%s: overdue notice not delivered: %s", entry.name, failure)
