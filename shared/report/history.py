"""The history report: is the watcher still running, and what did it see?

Per scrape target: checks, changes, failed checks and missed runs per day (the seed article's
breakdown, per target), last check, last change, the current error streak and gaps in the
schedule. Per refresh job: runs, failed runs and missed runs per day, durations, the last
success, the failure streak and gaps. Then the database's rows and size against the plan's
limit. This module reads the report; shared/report/render.py renders it as text or HTML.

Changes are counted as the checks whose content differs from the check before (window
function), not as the seed's `count(DISTINCT body) - 1` per day, which misses a change at
midnight and counts a page that flips back and forth once.
"""

import os
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from shared.errors import ConfigError

DEFAULT_DAYS = 14
MAX_DAYS = 3660  # ten years: --days beyond that is a typo
MAX_PLAN_LIMIT_MB = 1024 ** 3  # an exabyte: no plan is bigger
DEFAULT_PLAN_LIMIT_MB = 1024  # DB_PLAN_LIMIT_MB; set it to your plan's storage cap
GAP_FACTOR = 1.5  # a pause longer than 1.5 intervals between runs is a gap


@dataclass
class Day:
    day: date
    checks: int = 0
    changes: int = 0
    errors: int = 0
    expected: int | None = None  # runs the schedule asked for (None: schedule unknown)

    @property
    def missed(self) -> int | None:
        return None if self.expected is None else max(0, self.expected - self.checks - self.errors)


@dataclass
class Gap:
    start: datetime  # the last run before it
    end: datetime  # the next run, or the report's time when none came yet
    missed: int  # scheduled runs that did not happen
    open: bool = False  # no run since `start`


@dataclass
class Target:
    name: str
    url: str
    every: str | None  # from the jobs file; None when the target is not in it (or uses cron)
    interval: int | None  # seconds between runs
    last_check: datetime | None
    last_change: datetime | None
    error_streak: int
    last_error: str | None
    last_error_at: datetime | None
    contents: int
    checks_total: int
    first_seen: datetime | None  # the first successful check ever
    checks: list[tuple[datetime, bool]] = field(default_factory=list)  # in the window: (time, changed)
    errors: list[tuple[datetime, str]] = field(default_factory=list)  # in the window
    days: list[Day] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    @property
    def missed(self) -> int:
        return sum(d.missed or 0 for d in self.days)


@dataclass
class RefreshDay:
    day: date
    runs: int = 0  # failed ones and ones still running included; a retried run is one run
    errors: int = 0
    median_seconds: float | None = None  # of the finished runs
    longest_seconds: float | None = None
    expected: int | None = None  # runs the schedule asked for (None: schedule unknown)

    @property
    def missed(self) -> int | None:
        return None if self.expected is None else max(0, self.expected - self.runs)


@dataclass
class Run:
    started_at: datetime
    outcome: str  # running | ok | error
    seconds: float | None  # None while running
    error: str | None = None


@dataclass
class Refresh:
    """One refresh job in the report."""
    name: str
    every: str | None  # from the jobs file; None when the job is not in it (or uses cron)
    interval: int | None  # seconds between runs
    error_streak: int
    last_ok: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    runs_total: int
    first_run: datetime | None  # the schedule's slots count from here
    last_run: Run | None  # the latest, in the window or not
    median_seconds: float | None = None  # the window's finished runs
    longest_seconds: float | None = None
    runs: list[Run] = field(default_factory=list)  # in the window
    days: list[RefreshDay] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    @property
    def missed(self) -> int:
        return sum(d.missed or 0 for d in self.days)


@dataclass
class Database:
    size_bytes: int
    limit_bytes: int
    rows: dict[str, int]
    checks: int  # check times recorded (the seed's unnested count)


@dataclass
class Report:
    now: datetime
    since: datetime
    targets: list[Target]
    database: Database
    note: str | None = None  # e.g. why schedules are unknown
    refreshes: list[Refresh] = field(default_factory=list)


# --- reading ----------------------------------------------------------------------------

TARGETS = """
SELECT t.id, t.name, t.url, t.last_ok_at, t.last_changed_at, t.error_streak, t.last_error,
       t.last_error_at, count(c.id), coalesce(sum(c.checks), 0), min(c.first_seen)
FROM scrape_targets t LEFT JOIN scrape_contents c ON c.target_id = t.id
GROUP BY t.id ORDER BY t.name
"""

# Every check of every target with whether it changed the content, over the whole history
# (a check is a change when its content differs from the check before), kept from :since on.
# Checks in the window and whether each changed the content. Only segments that reach into
# the window are unnested, plus, per target, the one that ended last before it (its first check
# in the window compares with that): a year of history costs no more than the window.
CHECKS = """
WITH recent AS (
    SELECT c.target_id, c.id AS content_id, s.seen_at
    FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id
    WHERE s.seen_at[cardinality(s.seen_at)] >= :since
), older AS (
    SELECT DISTINCT ON (c.target_id) c.target_id, c.id AS content_id, s.seen_at
    FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id
    WHERE s.seen_at[cardinality(s.seen_at)] < :since
    ORDER BY c.target_id, s.seen_at[cardinality(s.seen_at)] DESC
), checks AS (
    SELECT target_id, ts, content_id FROM recent, unnest(seen_at) AS ts
    UNION ALL
    SELECT target_id, ts, content_id FROM older, unnest(seen_at) AS ts
), ordered AS (
    SELECT target_id, ts, content_id,
           lag(content_id) OVER (PARTITION BY target_id ORDER BY ts) AS previous
    FROM checks
)
SELECT target_id, ts, previous IS NOT NULL AND previous <> content_id
FROM ordered WHERE ts >= :since ORDER BY target_id, ts
"""

ERRORS = "SELECT target_id, at, error FROM scrape_errors WHERE at >= :since ORDER BY target_id, at"

# Per refresh job: its streak and last outcomes, its count of runs, its first run (the schedule's
# slots count from there) and its latest run, which may be older than the window (a stopped
# job's "no run since"). The index on (job_id, started_at) serves both lookups.
REFRESH_JOBS = """
SELECT j.id, j.name, j.error_streak, j.last_ok_at, j.last_error, j.last_error_at, n.runs, n.first,
       last.started_at, last.outcome, extract(epoch FROM last.ended_at - last.started_at)::float8, last.error
FROM refresh_jobs j
CROSS JOIN LATERAL (SELECT count(*), min(started_at) FROM refresh_runs WHERE job_id = j.id) AS n(runs, first)
LEFT JOIN LATERAL (SELECT * FROM refresh_runs WHERE job_id = j.id ORDER BY started_at DESC LIMIT 1) AS last ON true
ORDER BY j.name
"""

# The window's runs per job and UTC day: runs, failed runs, and the finished runs' median and
# longest duration (unfinished ones have no duration: aggregates skip NULLs). The grouping set
# (job_id) adds each job's whole-window row, with day NULL.
REFRESH_DAYS = """
WITH runs AS (
    SELECT job_id, (started_at AT TIME ZONE 'UTC')::date AS day, outcome,
           extract(epoch FROM ended_at - started_at)::float8 AS seconds
    FROM refresh_runs WHERE started_at >= :since
)
SELECT job_id, day, count(*), count(*) FILTER (WHERE outcome = 'error'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds), max(seconds)
FROM runs GROUP BY GROUPING SETS ((job_id, day), (job_id)) ORDER BY job_id, day
"""

# The window's runs one by one, for the timeline and the gaps between them (a daily job has
# one a day; even a 10-minute one has no more than the window's scrape checks).
REFRESH_RUNS = """
SELECT job_id, started_at, outcome, extract(epoch FROM ended_at - started_at)::float8, error
FROM refresh_runs WHERE started_at >= :since ORDER BY job_id, started_at
"""

# Exact counts: these tables stay small (one row per distinct content, per 200 checks, per error,
# per refresh run).
ROWS = """
SELECT (SELECT count(*) FROM scrape_targets), (SELECT count(*) FROM scrape_contents),
       (SELECT count(*) FROM scrape_seen), (SELECT count(*) FROM scrape_errors),
       (SELECT count(*) FROM refresh_jobs), (SELECT count(*) FROM refresh_runs),
       (SELECT coalesce(sum(checks), 0) FROM scrape_contents), pg_database_size(current_database())
"""


def plan_limit_bytes() -> int:
    raw = os.environ.get("DB_PLAN_LIMIT_MB") or str(DEFAULT_PLAN_LIMIT_MB)
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = float("nan")
    if not 0 < megabytes <= MAX_PLAN_LIMIT_MB:  # also false for nan and inf
        raise ConfigError(f"DB_PLAN_LIMIT_MB must be a number of megabytes from 1 to {MAX_PLAN_LIMIT_MB}, not {raw[:40]!r}")
    return int(megabytes * 1024 * 1024)


def build(con, schedules: dict[tuple[str, str], str | None], now: datetime | None = None, days: int = DEFAULT_DAYS,
          note: str | None = None) -> Report:
    """Read the report from the database. `schedules` maps (kind, job name) to the job's `every`
    ("10m", "1h", "1d"; None for cron); jobs not in it get no missed-run counts."""
    now = now or datetime.now(timezone.utc)
    since = datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(), timezone.utc)
    targets = _targets(con, schedules, since, now)
    refreshes = _refreshes(con, schedules, since, now)
    n_targets, n_contents, n_seen, n_errors, n_refresh_jobs, n_refresh_runs, n_checks, size = con.run(ROWS)[0]
    database = Database(size, plan_limit_bytes(), {"scrape_targets": n_targets, "scrape_contents": n_contents,
                                                   "scrape_seen": n_seen, "scrape_errors": n_errors,
                                                   "refresh_jobs": n_refresh_jobs, "refresh_runs": n_refresh_runs},
                        int(n_checks))
    return Report(now, since, targets, database, note, refreshes)


def _targets(con, schedules, since: datetime, now: datetime) -> list[Target]:
    from shared.platform.schedule import EVERY

    checks: dict[int, list] = {}
    for target_id, ts, changed in con.run(CHECKS, since=since):
        checks.setdefault(target_id, []).append((ts, changed))
    errors: dict[int, list] = {}
    for target_id, at, error in con.run(ERRORS, since=since):
        errors.setdefault(target_id, []).append((at, error))
    targets = []
    for row in con.run(TARGETS):
        target_id, name, url, last_ok, last_change, streak, last_error, last_error_at, contents, total, first = row
        every = schedules.get(("scrape", name))
        target = Target(name, url, every, EVERY.get(every), last_ok, last_change, streak, last_error,
                        last_error_at, contents, int(total), first, checks.get(target_id, []),
                        errors.get(target_id, []))
        target.days = _days(target, since, now)
        runs = sorted([ts for ts, _ in target.checks] + [at for at, _ in target.errors])
        target.gaps = _gaps(runs, target.interval, now)
        targets.append(target)
    return targets


def _refreshes(con, schedules, since: datetime, now: datetime) -> list[Refresh]:
    from shared.platform.schedule import EVERY

    days: dict[int, dict[date, RefreshDay]] = {}
    window: dict[int, tuple] = {}  # job id -> (median, longest) over the window
    for job_id, day, runs, errors, median, longest in con.run(REFRESH_DAYS, since=since):
        if day is None:
            window[job_id] = (median, longest)
        else:
            days.setdefault(job_id, {})[day] = RefreshDay(day, runs, errors, median, longest)
    runs: dict[int, list[Run]] = {}
    for job_id, started_at, outcome, seconds, error in con.run(REFRESH_RUNS, since=since):
        runs.setdefault(job_id, []).append(Run(started_at, outcome, seconds, error))
    refreshes = []
    for row in con.run(REFRESH_JOBS):
        job_id, name, streak, last_ok, last_error, last_error_at, total, first = row[:8]
        last_started, last_outcome, last_seconds, last_run_error = row[8:]
        every = schedules.get(("refresh", name))
        job = Refresh(name, every, EVERY.get(every), streak, last_ok, last_error, last_error_at, total, first,
                      Run(last_started, last_outcome, last_seconds, last_run_error) if last_started else None,
                      *window.get(job_id, (None, None)), runs.get(job_id, []))
        by_day = days.get(job_id, {})
        for day, expected in _expected(first, job.interval, since, now).items():
            by_day.setdefault(day, RefreshDay(day)).expected = expected
        job.days = [by_day[d] for d in sorted(by_day)]
        # A job that stopped before the window still shows when it last ran.
        starts = [r.started_at for r in job.runs] or ([job.last_run.started_at] if job.last_run else [])
        job.gaps = _gaps(starts, job.interval, now)
        refreshes.append(job)
    return refreshes


def _days(target: Target, since: datetime, now: datetime) -> list[Day]:
    by_day: dict[date, Day] = {}
    for ts, changed in target.checks:
        day = by_day.setdefault(ts.date(), Day(ts.date()))
        day.checks += 1
        day.changes += changed
    for at, _ in target.errors:
        by_day.setdefault(at.date(), Day(at.date())).errors += 1
    runs = [ts for ts, _ in target.checks] + [at for at, _ in target.errors]
    first = min([target.first_seen] + runs if target.first_seen else runs, default=None)
    for day, expected in _expected(first, target.interval, since, now).items():
        by_day.setdefault(day, Day(day)).expected = expected
    return [by_day[d] for d in sorted(by_day)]


def _expected(first: datetime | None, interval: int | None, since: datetime, now: datetime) -> dict[date, int]:
    """Scheduled runs per day of the window: the schedule's slots from the job's first run up to
    one interval ago (a run due now may still be on its way), days without any run included."""
    expected: dict[date, int] = {}
    if not interval or not first:
        return expected
    day = max(first.date(), since.date())
    while day <= now.date():
        midnight = datetime.combine(day, time.min, timezone.utc)
        start = max(first, midnight)
        end = min(midnight + timedelta(days=1), now - timedelta(seconds=interval))
        expected[day] = _slots(start, end, interval)
        day += timedelta(days=1)
    return expected


def _slots(start: datetime, end: datetime, interval: int) -> int:
    """How many times k * interval (seconds since the epoch) fall in [start, end)."""
    first, last = -(-start.timestamp() // interval), -(-end.timestamp() // interval)
    return max(0, int(last - first))


def _gaps(runs: list[datetime], interval: int | None, now: datetime) -> list[Gap]:
    """Pauses longer than GAP_FACTOR intervals between `runs` (sorted), and since the last one."""
    if not interval:
        return []
    limit = timedelta(seconds=interval * GAP_FACTOR)
    gaps = [Gap(a, b, round((b - a).total_seconds() / interval) - 1)
            for a, b in zip(runs, runs[1:]) if b - a > limit]
    if runs and now - runs[-1] > limit:
        gaps.append(Gap(runs[-1], now, int((now - runs[-1]).total_seconds() // interval), open=True))
    return gaps
