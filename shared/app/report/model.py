"""The history report: is the watcher still running, and what did it see?

Per scrape target: checks, changes, failed checks and missed runs per day (the seed article's
breakdown, per target) and per bucket of the timeline, last check, last change, the current
error streak, gaps in the schedule and the newest versions with their diffs. Per refresh job:
runs, failed runs and missed runs per day and bucket, durations, the last success, the failure
streak and gaps. Then the database's rows, size and growth against the plan's limit. This
module reads the report; shared/app/report/render.py renders it as text or HTML.

PostgreSQL does the counting: a year of 10-minute checks is 52,560 check times per target, and
the report never brings them into Python. Check times are stored in sorted segments of 200
(shared/scrape/store.py), so most of the work is per segment: checks per bucket by binary
search in a segment (width_bucket), changes where the content differs from the segment before,
gaps from the pauses inside segments. Only segments that overlap another content's (a page
flipping back and forth between versions) are taken apart check by check.

Changes are counted as the checks whose content differs from the check before, not as the
seed's `count(DISTINCT body) - 1` per day, which misses a change at midnight and counts a page
that flips back and forth once.
"""

import os
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from shared.core import numbers
from shared.core.errors import ConfigError
from shared.notify import diff

DEFAULT_DAYS = 14
MAX_DAYS = 3660  # ten years: --days beyond that is a typo
MAX_PLAN_LIMIT_MB = 1024 ** 3  # an exabyte: no plan is bigger
DEFAULT_PLAN_LIMIT_MB = 1024  # DB_PLAN_LIMIT_MB; set it to your plan's storage cap
GAP_FACTOR = 1.5  # a pause longer than 1.5 intervals between runs is a gap

# The timeline's buckets: the shortest of these (each divides a day, so days add up from
# buckets) that cuts the window into at most MAX_BUCKETS; a day for longer windows.
BUCKET_SECONDS = (600, 1200, 1800, 3600, 7200, 10800, 14400, 21600, 28800, 43200, 86400)
MAX_BUCKETS = 200
SHOWN_GAPS = 20  # the newest gaps listed per target or job; the others are only counted
VERSIONS = 4  # the newest versions shown per target, each with its diff against the one before
VERSION_CHARS = 32_000  # a version's body is compared on its first characters only
DIFF_LINES, DIFF_LINE_CHARS = 40, 200  # a diff is cut to its first lines, each line to its first characters
FORECAST_DAYS = 7  # growth is measured over the last days of history


@dataclass
class Day:
    day: date
    checks: int = 0
    changes: int = 0
    errors: int = 0
    expected: int | None = None  # runs the schedule asked for (None: schedule unknown)
    length: int = 1  # days: more for a row of the HTML table of a long window
    missed_days: int | None = None  # such a row's missed runs: its days' (a busy day makes up for none)

    @property
    def missed(self) -> int | None:
        if self.missed_days is not None:
            return self.missed_days
        return None if self.expected is None else max(0, self.expected - self.checks - self.errors)


@dataclass
class Gap:
    start: datetime  # the last run before it
    end: datetime  # the next run, or the report's time when none came yet
    missed: int  # scheduled runs that did not happen
    open: bool = False  # no run since `start`


@dataclass
class Timeline:
    """Counts per bucket of the window: bucket k covers [start + k * seconds, start + (k + 1) * seconds)."""
    start: datetime
    seconds: int
    series: dict[str, list[int]]  # e.g. "checks" -> one count per bucket
    expected: list[int] | None = None  # runs the schedule asked for per bucket (None: schedule unknown)

    def bucket(self, k: int) -> datetime:
        return self.start + timedelta(seconds=k * self.seconds)


@dataclass
class Version:
    """One distinct content of a target, and how it differs from the version before it."""
    first_seen: datetime
    last_seen: datetime
    checks: int
    size: int  # bytes of its body
    diff: list[str] | None = None  # unified diff lines against the version before (None: the oldest)
    diff_cut: int = 0  # diff lines left out
    truncated: bool = False  # compared on its first VERSION_CHARS characters only


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
    timeline: Timeline | None = None  # checks, changes, errors per bucket of the window
    days: list[Day] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)  # the newest SHOWN_GAPS, then the open one
    earlier_gaps: int = 0  # gaps in the window older than those
    versions: list[Version] = field(default_factory=list)  # newest first

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
    length: int = 1  # days: more for a row of the HTML table of a long window
    missed_days: int | None = None  # such a row's missed runs: its days' (a busy day makes up for none)

    @property
    def missed(self) -> int | None:
        if self.missed_days is not None:
            return self.missed_days
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
    timeline: Timeline | None = None  # ok, failed and running runs per bucket of the window
    days: list[RefreshDay] = field(default_factory=list)
    periods: list[RefreshDay] = field(default_factory=list)  # the days in periods of period_days (HTML)
    gaps: list[Gap] = field(default_factory=list)  # the newest SHOWN_GAPS, then the open one
    earlier_gaps: int = 0

    @property
    def missed(self) -> int:
        return sum(d.missed or 0 for d in self.days)


@dataclass
class Database:
    size_bytes: int
    limit_bytes: int
    rows: dict[str, int]
    checks: int  # check times recorded (the seed's unnested count)
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
    targets: list[Target]
    database: Database
    note: str | None = None  # e.g. why schedules are unknown
    refreshes: list[Refresh] = field(default_factory=list)
    period_days: int = 1  # the HTML tables' rows: days, or weeks for a long window
    # Around the jobs (shared/app/monitor.py): (kind, name, since) of jobs overdue now, and
    # (kind, name, when, reason) of jobs whose last notification could not be delivered.
    overdue: list = field(default_factory=list)
    undelivered: list = field(default_factory=list)


# --- reading ----------------------------------------------------------------------------

# Per target: its state, its contents' count, checks and first check, and the ids of its
# newest :n + 1 contents by last check (the versions shown, and the one before the oldest).
TARGETS = """
SELECT t.id, t.name, t.url, t.last_ok_at, t.last_changed_at, t.error_streak, t.last_error,
       t.last_error_at, count(c.id), coalesce(sum(c.checks), 0), min(c.first_seen),
       trim_array(array_agg(c.id ORDER BY c.last_seen DESC, c.id DESC) FILTER (WHERE c.id IS NOT NULL),
                  CAST(greatest(0, count(c.id) - :n - 1) AS int))
FROM scrape_targets t LEFT JOIN scrape_contents c ON c.target_id = t.id
GROUP BY t.id ORDER BY t.name
"""

# Segments (the sorted check times of one content, 200 a row) that reach into the window: only
# contents seen since :since can have one, and the primary key (content_id, segment) finds them.
RECENT = """
recent AS (
    SELECT c.target_id, s.content_id, s.segment, s.seen_at, s.seen_at[1] AS first,
           s.seen_at[cardinality(s.seen_at)] AS last
    FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id
    WHERE c.last_seen >= :since
)"""

# Checks per target and bucket k (of :bucket seconds from :since): in each segment, the times
# before a bucket's end, by binary search (width_bucket counts the sorted elements <= its operand).
TARGET_CHECKS = f"""
WITH {RECENT}, counted AS MATERIALIZED (  -- materialized: the arrays stay out of the sort below
    SELECT target_id, k, width_bucket(CAST(:since AS timestamptz) + make_interval(secs => (k + 1) * :bucket)
                                      - interval '1 microsecond', seen_at)
                         - width_bucket(CAST(:since AS timestamptz) + make_interval(secs => k * :bucket)
                                        - interval '1 microsecond', seen_at) AS n
    FROM recent, generate_series(greatest(0, floor(extract(epoch FROM first - :since) / :bucket)::int),
                                 floor(extract(epoch FROM last - :since) / :bucket)::int) AS k
    WHERE last >= :since
)
SELECT target_id, k, sum(n) FROM counted GROUP BY target_id, k
"""

# Changes per target and bucket: a check is a change when the check before it (in time, of any
# content) saw another content. `seg`, without the arrays: the window's segments and those that
# may hold a target's last check before it (its first in the window may be a change): the one
# before a recent content's first in the window, and the last one of the content seen last
# before the window. A segment is `alone` when it overlaps no other: no other content was seen
# between its checks, and it is one piece; else (a page flipping back and forth between
# versions) each of its checks is a piece. In time order, a piece whose content differs from
# the piece before starts with a change.
TARGET_CHANGES = """
WITH seg AS (
    SELECT target_id, content_id, segment, first, last FROM (
        SELECT c.target_id, s.content_id, s.segment, s.seen_at[1] AS first, s.seen_at[cardinality(s.seen_at)] AS last,
               lead(s.seen_at[cardinality(s.seen_at)]) OVER (PARTITION BY s.content_id ORDER BY s.segment) AS next_last
        FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id
        WHERE c.last_seen >= :since) r
    WHERE last >= :since OR next_last >= :since
    UNION ALL
    SELECT c.target_id, s.content_id, s.segment, s.seen_at[1], s.seen_at[cardinality(s.seen_at)]
    FROM (SELECT DISTINCT ON (target_id) id, target_id FROM scrape_contents
          WHERE last_seen < :since ORDER BY target_id, last_seen DESC) c
    CROSS JOIN LATERAL (SELECT * FROM scrape_seen WHERE content_id = c.id ORDER BY segment DESC LIMIT 1) s
), placed AS (
    SELECT *, coalesce(first > max(last) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), true)
              AND coalesce(last < lead(first) OVER w, true) AS alone
    FROM seg WINDOW w AS (PARTITION BY target_id ORDER BY first)
), pieces AS (
    SELECT target_id, content_id, first FROM placed WHERE alone
    UNION ALL
    SELECT p.target_id, p.content_id, ts FROM placed p JOIN scrape_seen s USING (content_id, segment),
                                             unnest(s.seen_at) AS ts WHERE NOT p.alone
)
SELECT target_id, floor(extract(epoch FROM first - :since) / :bucket)::int AS k, count(*) FROM (
    SELECT target_id, first, content_id <> lag(content_id) OVER (PARTITION BY target_id ORDER BY first) AS changed
    FROM pieces) p
WHERE changed AND first >= :since GROUP BY target_id, k
"""

# Failed checks per target and bucket; and per target (k NULL), its first in the window.
TARGET_ERRORS = """
SELECT target_id, floor(extract(epoch FROM at - :since) / :bucket)::int AS k, count(*),
       CASE WHEN GROUPING(floor(extract(epoch FROM at - :since) / :bucket)::int) = 1 THEN min(at) END
FROM scrape_errors WHERE at >= :since
GROUP BY GROUPING SETS ((target_id, floor(extract(epoch FROM at - :since) / :bucket)::int), (target_id))
"""

# Gaps in the window: pauses between a target's runs (checks and failed checks) longer than its
# limit (:limits, JSON: name -> seconds). Each segment is cut at the long pauses between its
# own checks into blocks [start, finish]; a block or failure that starts more than the limit
# after every earlier one of its target finished ends a gap (a pause inside a segment filled by
# another content's checks is no gap). Returns each target's newest :keep gaps and its count.
TARGET_GAPS = f"""
WITH {RECENT}, limits AS NOT MATERIALIZED (
    SELECT t.id AS target_id, make_interval(secs => CAST(l.value AS float8)) AS gap
    FROM json_each_text(CAST(:limits AS json)) AS l JOIN scrape_targets t ON t.name = l.key
), cuts AS MATERIALIZED (  -- where blocks start: a segment's first check, and each check after a long
                          -- pause; materialized: the arrays stay out of the sorts below
    SELECT target_id, content_id, segment, seen_at[i] AS start, CASE WHEN i > 1 THEN seen_at[i - 1] END AS after, last
    FROM recent JOIN limits USING (target_id), generate_series(1, cardinality(seen_at)) AS i
    WHERE last >= :since AND (i = 1 OR seen_at[i] - seen_at[i - 1] > gap)
), runs AS (
    SELECT target_id, start, coalesce(lead(after) OVER (PARTITION BY content_id, segment ORDER BY start), last) AS finish
    FROM cuts
    UNION ALL
    SELECT target_id, at, at FROM scrape_errors JOIN limits USING (target_id) WHERE at >= :since
), pauses AS (
    SELECT target_id, start,
           max(finish) OVER (PARTITION BY target_id ORDER BY start ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
    FROM runs
), gaps AS (
    SELECT p.target_id, p.before, p.start, count(*) OVER (PARTITION BY p.target_id) AS gaps,
           row_number() OVER (PARTITION BY p.target_id ORDER BY p.start DESC) AS newer
    FROM pauses p JOIN limits l USING (target_id)
    WHERE p.start - p.before > l.gap AND p.before >= :since
)
SELECT target_id, before, start, gaps FROM gaps WHERE newer <= :keep ORDER BY target_id, start
"""

# Versions by content id, each body cut to :chars + 1 characters (one more: was it cut?).
VERSIONS_SQL = """
SELECT id, first_seen, last_seen, checks, octet_length(body), left(body, :chars + 1)
FROM scrape_contents WHERE id = ANY(CAST(:ids AS int[]))
"""

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
# longest duration (unfinished ones have no duration: aggregates skip NULLs). The grouping sets
# add each job's rows per period of :period days from :since (day NULL) and its whole-window
# row (day and period NULL).
REFRESH_DAYS = """
WITH runs AS (
    SELECT job_id, (started_at AT TIME ZONE 'UTC')::date AS day, outcome,
           floor(extract(epoch FROM started_at - :since) / (86400 * :period))::int AS period,
           extract(epoch FROM ended_at - started_at)::float8 AS seconds
    FROM refresh_runs WHERE started_at >= :since
)
SELECT job_id, day, period, count(*), count(*) FILTER (WHERE outcome = 'error'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds), max(seconds)
FROM runs GROUP BY GROUPING SETS ((job_id, day), (job_id, period), (job_id)) ORDER BY job_id, day, period
"""

# Runs per job and bucket, by outcome.
REFRESH_BUCKETS = """
SELECT job_id, floor(extract(epoch FROM started_at - :since) / :bucket)::int AS k,
       count(*) FILTER (WHERE outcome = 'ok'), count(*) FILTER (WHERE outcome = 'error'),
       count(*) FILTER (WHERE outcome NOT IN ('ok', 'error'))
FROM refresh_runs WHERE started_at >= :since GROUP BY job_id, k
"""

# Gaps between a job's runs in the window longer than its limit (:limits, JSON: name ->
# seconds): each job's newest :keep gaps and its count.
REFRESH_GAPS = """
WITH limits AS (
    SELECT j.id AS job_id, make_interval(secs => CAST(l.value AS float8)) AS gap
    FROM json_each_text(CAST(:limits AS json)) AS l JOIN refresh_jobs j ON j.name = l.key
), pauses AS (
    SELECT r.job_id, l.gap, r.started_at, lag(r.started_at) OVER (PARTITION BY r.job_id ORDER BY r.started_at) AS before
    FROM refresh_runs r JOIN limits l USING (job_id) WHERE r.started_at >= :since
), gaps AS (
    SELECT job_id, before, started_at, count(*) OVER (PARTITION BY job_id) AS gaps,
           row_number() OVER (PARTITION BY job_id ORDER BY started_at DESC) AS newer
    FROM pauses WHERE started_at - before > gap
)
SELECT job_id, before, started_at, gaps FROM gaps WHERE newer <= :keep ORDER BY job_id, started_at
"""

# Rows per table (exact counts: these tables stay small: a row per distinct content, per 200
# checks, per error, per refresh run), the database's size, and its growth since :since: each
# history table's size times the share of its contents dated from then (check times for
# scrape_seen, body bytes for scrape_contents, rows for the others); and when the history began.
# Dead rows (autovacuum's to reclaim) are not growth.
DATABASE = """
WITH contents AS (
    SELECT count(*) AS n, coalesce(sum(checks), 0) AS checks, min(first_seen) AS began,
           CAST(sum(pg_column_size(body)) AS float8) AS bytes,
           CAST(sum(pg_column_size(body)) FILTER (WHERE first_seen >= :since) AS float8) AS new_bytes
    FROM scrape_contents
), seen AS (
    SELECT CAST(sum(cardinality(s.seen_at) - width_bucket(CAST(:since AS timestamptz) - interval '1 microsecond',
                                                           s.seen_at)) AS float8) AS new
    FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id
    WHERE c.last_seen >= :since AND s.seen_at[cardinality(s.seen_at)] >= :since
), errors AS (
    SELECT count(*) AS n, CAST(count(*) FILTER (WHERE at >= :since) AS float8) AS new, min(at) AS began
    FROM scrape_errors
), runs AS (
    SELECT count(*) AS n, CAST(count(*) FILTER (WHERE started_at >= :since) AS float8) AS new, min(started_at) AS began
    FROM refresh_runs
)
SELECT (SELECT count(*) FROM scrape_targets), contents.n, (SELECT count(*) FROM scrape_seen), errors.n,
       (SELECT count(*) FROM refresh_jobs), runs.n, contents.checks, pg_database_size(current_database()),
       coalesce(pg_total_relation_size('scrape_seen') * seen.new / nullif(contents.checks, 0), 0)
       + coalesce(pg_total_relation_size('scrape_contents') * contents.new_bytes / nullif(contents.bytes, 0), 0)
       + coalesce(pg_total_relation_size('scrape_errors') * errors.new / nullif(errors.n, 0), 0)
       + coalesce(pg_total_relation_size('refresh_runs') * runs.new / nullif(runs.n, 0), 0),
       least(contents.began, errors.began, runs.began)
FROM contents, seen, errors, runs
"""


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
          note: str | None = None) -> Report:
    """Read the report from the database. `schedules` maps (kind, job name) to the job's `every`
    ("10m", "1h", "1d"; None for cron); jobs not in it get no missed-run counts."""
    from shared.core.db import transaction

    now = now or datetime.now(timezone.utc)
    since = datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(), timezone.utc)
    bucket = bucket_seconds(days)
    # One snapshot for every query. No JIT: the planner overrates these queries (generate_series
    # per segment) and compiling them took longer than running them. Sorts of a year's pieces
    # and pauses (a few MB) in memory rather than in temporary files.
    with transaction(con):
        con.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        con.run("SET LOCAL jit = off")
        con.run("SET LOCAL work_mem = '32MB'")
        targets = _targets(con, schedules, since, now, bucket)
        refreshes = _refreshes(con, schedules, since, now, bucket, period_days(days))
        database = _database(con, now)
        overdue, undelivered = _around_the_jobs(con, since)
    return Report(now, since, targets, database, note, refreshes, period_days(days), overdue, undelivered)


def _around_the_jobs(con, since: datetime) -> tuple[list, list]:
    """Overdue jobs and undelivered notifications (the app's own tables; none before they exist)."""
    from shared.app import store as app_store

    if not con.run("SELECT to_regclass('job_watch') IS NOT NULL AND to_regclass('notification_failures') IS NOT NULL")[0][0]:
        return [], []
    return app_store.overdue(con), [row for row in app_store.notification_failures(con) if row[2] >= since]


def _limits(schedules, kind: str) -> str:
    """The gap limit (seconds) of each job of `kind` with an `every`, as JSON for the queries."""
    import json

    from shared.core.schedule import EVERY

    return json.dumps({name: EVERY[every] * GAP_FACTOR for (k, name), every in schedules.items()
                       if k == kind and every in EVERY})


def _timeline(since: datetime, now: datetime, bucket: int, names: tuple[str, ...]) -> Timeline:
    size = int((now - since).total_seconds() // bucket) + 1  # up to the bucket of `now`
    return Timeline(since, bucket, {name: [0] * size for name in names})


def _targets(con, schedules, since: datetime, now: datetime, bucket: int) -> list[Target]:
    from shared.core.schedule import EVERY

    rows = con.run(TARGETS, n=VERSIONS)
    timelines = {row[0]: _timeline(since, now, bucket, ("checks", "changes", "errors")) for row in rows}
    for name, query in (("checks", TARGET_CHECKS), ("changes", TARGET_CHANGES)):
        for target_id, k, n in con.run(query, since=since, bucket=bucket):
            if k < len(timelines[target_id].series[name]):  # one after `now` (a report of the past) is not shown
                timelines[target_id].series[name][k] = int(n)
    first_error: dict[int, datetime] = {}
    for target_id, k, errors, first in con.run(TARGET_ERRORS, since=since, bucket=bucket):
        if k is None:
            first_error[target_id] = first
        elif k < len(timelines[target_id].series["errors"]):
            timelines[target_id].series["errors"][k] = errors
    gaps: dict[int, tuple[list, int]] = {}
    for target_id, before, start, count in con.run(TARGET_GAPS, since=since, limits=_limits(schedules, "scrape"),
                                                   keep=SHOWN_GAPS):
        gaps.setdefault(target_id, ([], count))[0].append((before, start))
    versions = _versions(con, {row[0]: row[11] for row in rows if row[11]})
    targets = []
    for row in rows:
        target_id, name, url, last_ok, last_change, streak, last_error, last_error_at, contents, total, first = row[:11]
        every = schedules.get(("scrape", name))
        target = Target(name, url, every, EVERY.get(every), last_ok, last_change, streak, last_error,
                        last_error_at, contents, int(total), first, timelines[target_id],
                        versions=versions.get(target_id, []))
        first_run = min([t for t in (first, first_error.get(target_id)) if t], default=None)
        _schedule(target.timeline, first_run, target.interval, now)
        target.days = _days(target.timeline, _expected(first_run, target.interval, since, now))
        pairs, count = gaps.get(target_id, ([], 0))
        last_run = max([t for t in (last_ok, last_error_at) if t], default=None)
        target.gaps, target.earlier_gaps = _gaps(pairs, count, last_run, target.interval, now)
        targets.append(target)
    return targets


def _versions(con, newest: dict[int, list[int]]) -> dict[int, list[Version]]:
    """The newest VERSIONS versions of each target (`newest`: target id -> content ids, newest
    first, one more than shown), each with its diff against the one before."""
    ids = [i for ids in newest.values() for i in ids]
    found = {row[0]: row[1:] for row in con.run(VERSIONS_SQL, ids=ids, chars=VERSION_CHARS)} if ids else {}
    versions = {}
    for target_id, ids in newest.items():
        rows = [found[i] for i in ids]
        shown = []
        for i, (first, last, checks, size, body) in enumerate(rows[:VERSIONS]):
            version = Version(first, last, checks, size, truncated=len(body) > VERSION_CHARS)
            if i + 1 < len(rows):
                before = rows[i + 1][4]
                version.truncated |= len(before) > VERSION_CHARS
                version.diff, version.diff_cut = _diff(before[:VERSION_CHARS], body[:VERSION_CHARS])
            shown.append(version)
        versions[target_id] = shown
    return versions


def _diff(before: str, after: str) -> tuple[list[str], int]:
    """The unified diff's lines (without its file header), the first DIFF_LINES kept, each cut
    to DIFF_LINE_CHARS; and how many lines were left out."""
    lines = diff.hunks(before, after, context=1)
    return [line[:DIFF_LINE_CHARS] for line in lines[:DIFF_LINES]], max(0, len(lines) - DIFF_LINES)


def _refreshes(con, schedules, since: datetime, now: datetime, bucket: int, period: int) -> list[Refresh]:
    from shared.core.schedule import EVERY

    days: dict[int, dict[date, RefreshDay]] = {}
    periods: dict[int, dict[int, RefreshDay]] = {}
    window: dict[int, tuple] = {}  # job id -> (median, longest) over the window
    for job_id, day, k, runs, errors, median, longest in con.run(REFRESH_DAYS, since=since, period=period):
        if day is not None:
            days.setdefault(job_id, {})[day] = RefreshDay(day, runs, errors, median, longest)
        elif k is not None:
            start = (since + timedelta(days=k * period)).date()
            periods.setdefault(job_id, {})[k] = RefreshDay(start, runs, errors, median, longest, length=period)
        else:
            window[job_id] = (median, longest)
    rows = con.run(REFRESH_JOBS)
    timelines = {row[0]: _timeline(since, now, bucket, ("ok", "errors", "running")) for row in rows}
    for job_id, k, ok, errors, running in con.run(REFRESH_BUCKETS, since=since, bucket=bucket):
        series = timelines[job_id].series
        if k < len(series["ok"]):
            series["ok"][k], series["errors"][k], series["running"][k] = ok, errors, running
    gaps: dict[int, tuple[list, int]] = {}
    for job_id, before, start, count in con.run(REFRESH_GAPS, since=since, limits=_limits(schedules, "refresh"),
                                                keep=SHOWN_GAPS):
        gaps.setdefault(job_id, ([], count))[0].append((before, start))
    refreshes = []
    for row in rows:
        job_id, name, streak, last_ok, last_error, last_error_at, total, first = row[:8]
        last_started, last_outcome, last_seconds, last_run_error = row[8:]
        every = schedules.get(("refresh", name))
        job = Refresh(name, every, EVERY.get(every), streak, last_ok, last_error, last_error_at, total, first,
                      Run(last_started, last_outcome, last_seconds, last_run_error) if last_started else None,
                      *window.get(job_id, (None, None)), timelines[job_id])
        by_day = days.get(job_id, {})
        for day, expected in _expected(first, job.interval, since, now).items():
            by_day.setdefault(day, RefreshDay(day)).expected = expected
        job.days = [by_day[d] for d in sorted(by_day)]
        _schedule(job.timeline, first, job.interval, now)
        job.periods = _periods(job.days, periods.get(job_id, {}), since, period)
        pairs, count = gaps.get(job_id, ([], 0))
        job.gaps, job.earlier_gaps = _gaps(pairs, count, last_started, job.interval, now)
        refreshes.append(job)
    return refreshes


def _periods(days: list[RefreshDay], by_period: dict[int, RefreshDay], since: datetime,
             period: int) -> list[RefreshDay]:
    """A refresh job's days in periods of `period` days (its own days when that is 1): the
    durations from the query's periods, the runs and missed runs summed from the days."""
    if period == 1:
        return days
    for d in days:
        k = (d.day - since.date()).days // period
        row = by_period.setdefault(k, RefreshDay(since.date() + timedelta(days=k * period), length=period))
        if d.expected is not None:
            row.expected, row.missed_days = (row.expected or 0) + d.expected, (row.missed_days or 0) + d.missed
    return [by_period[k] for k in sorted(by_period)]


def _schedule(timeline: Timeline, first: datetime | None, interval: int | None, now: datetime) -> None:
    """The runs the schedule asked for in each bucket (none before the first run)."""
    if not interval or not first:
        return
    size = len(next(iter(timeline.series.values())))
    last_due = now - timedelta(seconds=interval)
    timeline.expected = [
        _slots(max(first, timeline.bucket(k)), min(timeline.bucket(k + 1), last_due), interval) for k in range(size)]


def _days(timeline: Timeline, expected: dict[date, int]) -> list[Day]:
    """A target's days from its buckets (a day is a whole number of them): the days with a check,
    a failure or a scheduled run."""
    per_day = 86400 // timeline.seconds
    checks, changes, errors = (timeline.series[name] for name in ("checks", "changes", "errors"))
    found = []
    for start in range(0, len(checks), per_day):
        part = slice(start, start + per_day)
        day = Day(timeline.bucket(start).date(), sum(checks[part]), sum(changes[part]), sum(errors[part]))
        day.expected = expected.get(day.day)
        if day.checks or day.errors or day.expected is not None:
            found.append(day)
    return found


def periods(days: list[Day], since: datetime, period: int) -> list[Day]:
    """A target's days summed in periods of `period` days from `since` (the HTML table of a long window)."""
    if period == 1:
        return days
    by_period: dict[int, Day] = {}
    for d in days:
        k = (d.day - since.date()).days // period
        row = by_period.setdefault(k, Day(since.date() + timedelta(days=k * period), length=period))
        row.checks, row.changes, row.errors = row.checks + d.checks, row.changes + d.changes, row.errors + d.errors
        if d.expected is not None:
            row.expected, row.missed_days = (row.expected or 0) + d.expected, (row.missed_days or 0) + d.missed
    return [by_period[k] for k in sorted(by_period)]


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


def _gaps(pairs: list[tuple[datetime, datetime]], count: int, last_run: datetime | None, interval: int | None,
          now: datetime) -> tuple[list[Gap], int]:
    """The gaps between runs the query found (the newest of `count`), then the open one when no
    run came for more than GAP_FACTOR intervals since `last_run`; and how many were left out."""
    if not interval:
        return [], 0
    gaps = [Gap(a, b, round((b - a).total_seconds() / interval) - 1) for a, b in pairs]
    if last_run and now - last_run > timedelta(seconds=interval * GAP_FACTOR):
        gaps.append(Gap(last_run, now, int((now - last_run).total_seconds() // interval), open=True))
    return gaps, count - len(pairs)


def _database(con, now: datetime) -> Database:
    since = now - timedelta(days=FORECAST_DAYS)
    row = con.run(DATABASE, since=since)[0]
    n_targets, n_contents, n_seen, n_errors, n_refresh_jobs, n_refresh_runs, n_checks, size, grown, began = row
    database = Database(size, plan_limit_bytes(), {"scrape_targets": n_targets, "scrape_contents": n_contents,
                                                   "scrape_seen": n_seen, "scrape_errors": n_errors,
                                                   "refresh_jobs": n_refresh_jobs, "refresh_runs": n_refresh_runs},
                        int(n_checks))
    if began is not None and now - max(began, since) >= timedelta(days=1):  # a day of history at least
        database.growth_days = (now - max(began, since)).total_seconds() / 86400
        database.growth_per_day = float(grown) / database.growth_days
    return database
