"""The history report: is the watcher still running, and what did it see?

Each kind reads its own section (its `Kind.report`, shared/<kind>/report.py, with the SQL in
its store.py): per watched page, checks, changes, failed checks and missed runs per day; per
refresh job, runs, failures, durations and missed runs. This module assembles them, in one
snapshot of the database, with what is around the jobs (overdue jobs, undelivered
notifications) and the database's rows, size and growth against the plan's limit;
shared/app/report/render.py renders it all as text or HTML.
"""

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from shared.core import numbers
from shared.core.errors import ConfigError
from shared.core.report import Section, Tables, Window

DEFAULT_DAYS = 14
MAX_DAYS = 3660  # ten years: --days beyond that is a typo
MAX_PLAN_LIMIT_MB = 1024 ** 3  # an exabyte: no plan is bigger
DEFAULT_PLAN_LIMIT_MB = 1024  # DB_PLAN_LIMIT_MB; set it to your plan's storage cap

# The timeline's buckets: the shortest of these (each divides a day, so days add up from
# buckets) that cuts the window into at most MAX_BUCKETS; a day for longer windows.
BUCKET_SECONDS = (600, 1200, 1800, 3600, 7200, 10800, 14400, 21600, 28800, 43200, 86400)
MAX_BUCKETS = 200
FORECAST_DAYS = 7  # growth is measured over the last days of history


@dataclass
class Database:
    size_bytes: int
    limit_bytes: int
    rows: dict[str, int]  # per table, every kind's
    records: list[str]  # what the kinds' tables hold, in words ("4 checks recorded")
    growth_per_day: float | None = None  # bytes a day, over the last FORECAST_DAYS (None: too little history)
    growth_days: float | None = None  # the days it was measured over

    @property
    def days_left(self) -> float | None:
        """Days until the plan's limit at that growth (None: not growing, or unknown)."""
        if not self.growth_per_day or self.growth_per_day <= 0:
            return None
        return max(0.0, (self.limit_bytes - self.size_bytes) / self.growth_per_day)


@dataclass
class Report:
    now: datetime
    since: datetime
    sections: dict[str, Section]  # kind name -> its section, in the kinds' order
    database: Database
    note: str | None = None  # e.g. why schedules are unknown
    period_days: int = 1  # the HTML tables' rows: days, or weeks for a long window
    # Around the jobs (shared/app/monitor.py): (kind, name, since) of jobs overdue now, and
    # (kind, name, when, reason) of jobs whose last notification could not be delivered.
    overdue: list = field(default_factory=list)
    undelivered: list = field(default_factory=list)

    def items(self, kind: str) -> list:
        """A kind's own records (scrape: Target, refresh: Refresh...)."""
        section = self.sections.get(kind)
        return section.items if section else []

    def views(self):
        """Every item's view, kind by kind, made one at a time as they are read."""
        for section in self.sections.values():
            for item in section.items:
                yield section.view(item)


# --- reading ----------------------------------------------------------------------------

def database_failure(exc: Exception, doing: str) -> Exception:
    """What a command ends with when the database answered `doing` with an error: one line
    (db.classify: refused, unavailable, or failed work naming its SQLSTATE), never a traceback;
    anything else is returned as it is (a bug keeps its traceback)."""
    from shared.core import db
    from shared.core.errors import JobError

    return exc if isinstance(exc, JobError) else db.classify(exc, doing)


def plan_limit_bytes() -> int:
    raw = os.environ.get("DB_PLAN_LIMIT_MB") or str(DEFAULT_PLAN_LIMIT_MB)
    try:
        megabytes = numbers.decimal(raw, "DB_PLAN_LIMIT_MB", 0, MAX_PLAN_LIMIT_MB)
    except ValueError:
        megabytes = float("nan")
    if not 0 < megabytes <= MAX_PLAN_LIMIT_MB:  # also false for nan and inf
        raise ConfigError(f"DB_PLAN_LIMIT_MB must be a number of megabytes from 1 to {MAX_PLAN_LIMIT_MB}, not {raw[:40]!r}")
    return int(megabytes * 1024 * 1024)


def bucket_seconds(days: int) -> int:
    return next((b for b in BUCKET_SECONDS if days * 86400 // b <= MAX_BUCKETS), 86400)


def period_days(days: int) -> int:
    """The HTML tables' rows: a day each up to a month, then a week each, then four weeks."""
    return 1 if days <= 31 else 7 if days <= 366 else 28


def build(con, schedules: dict[tuple[str, str], str | None], now: datetime | None = None, days: int = DEFAULT_DAYS,
          note: str | None = None, kinds=None) -> Report:
    """Read the report from the database. `schedules` maps (kind, job name) to the job's `every`
    ("10m", "1h", "1d"; None for cron); jobs not in it get no missed-run counts. `kinds`: the
    kinds whose sections it holds (default: all of them)."""
    from shared.app.kinds import KINDS
    from shared.core.db import transaction

    now = now or datetime.now(timezone.utc)
    since = datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(), timezone.utc)
    kinds = [kind for kind in (kinds or KINDS.values()) if kind.report]
    # One snapshot for every query. No JIT: the planner overrates these queries (generate_series
    # per segment) and compiling them took longer than running them. Sorts of a year's pieces
    # and pauses (a few MB) in memory rather than in temporary files.
    with transaction(con):
        con.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        con.run("SET LOCAL jit = off")
        con.run("SET LOCAL work_mem = '32MB'")
        sections = {}
        for kind in kinds:
            window = Window(now, since, bucket_seconds(days), period_days(days),
                            {name: every for (k, name), every in schedules.items() if k == kind.name},
                            growth_since=now - timedelta(days=FORECAST_DAYS))
            sections[kind.name] = kind.report(con, window)
        database = _database(con, now, [section.tables for section in sections.values()])
        overdue, undelivered = _around_the_jobs(con, since)
    return Report(now, since, sections, database, note, period_days(days), overdue, undelivered)


def _around_the_jobs(con, since: datetime) -> tuple[list, list]:
    """Overdue jobs and undelivered notifications (the app's own tables; none before they exist)."""
    from shared.app import store as app_store

    if not app_store.has_monitor_tables(con):
        return [], []
    return app_store.overdue(con), [row for row in app_store.notification_failures(con) if row[2] >= since]


def _database(con, now: datetime, tables: list[Tables]) -> Database:
    from shared.app import store as app_store

    since = now - timedelta(days=FORECAST_DAYS)
    rows = {name: count for part in tables for name, count in part.rows.items()}
    database = Database(app_store.database_size(con), plan_limit_bytes(), rows,
                        [phrase for part in tables for phrase in part.records])
    began = min((part.began for part in tables if part.began is not None), default=None)
    if began is not None and now - max(began, since) >= timedelta(days=1):  # a day of history at least
        database.growth_days = (now - max(began, since)).total_seconds() / 86400
        database.growth_per_day = sum(part.grown for part in tables) / database.growth_days
    return database
