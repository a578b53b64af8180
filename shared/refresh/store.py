"""Refresh run history in PostgreSQL: all SQL for the refresh tables lives here.

One row per run in `refresh_runs` (job, run key, start, end, outcome, how it ran, rows, error)
and one per job in `refresh_jobs` (its failure streak, for alerts and the report). A run is
claimed before CARTO is called: a redelivered scheduled event (same run key) whose run is done
or still under way claims nothing and is a duplicate; a run that failed may be tried again
under its key, and that retry is not a second failure.
"""

import json
from dataclasses import dataclass
from datetime import datetime

from shared.core.db import storable, transaction
from shared.core.text import plural

MIGRATIONS = [
    """
    -- One row per refresh job, found by its name: its failure streak and last outcomes.
    CREATE TABLE refresh_jobs (
        id             serial PRIMARY KEY,
        name           text NOT NULL UNIQUE,
        error_streak   int NOT NULL DEFAULT 0,   -- consecutive failed runs
        last_ok_at     timestamptz,
        last_error     text,
        last_error_at  timestamptz,
        last_error_key text                      -- run key of the last failure: its retry is not a new one
    );

    -- One row per run; a retry of a failed run (same key) reuses its row.
    CREATE TABLE refresh_runs (
        id         bigserial PRIMARY KEY,
        job_id     int NOT NULL REFERENCES refresh_jobs ON DELETE CASCADE,
        run_key    text,                         -- the scheduled time; NULL for a manual run
        started_at timestamptz NOT NULL,
        ended_at   timestamptz,                  -- NULL while running
        outcome    text NOT NULL,                -- running | ok | error
        via        text,                         -- SQL API | batch job <id> | PostgreSQL
        rows       bigint,
        error      text,
        attempts   int NOT NULL DEFAULT 1,
        UNIQUE (job_id, run_key)                 -- NULL keys never collide
    );
    CREATE INDEX refresh_runs_job_started ON refresh_runs (job_id, started_at);
    """,
]
FIRST_VERSION = 4  # the one schema's versions 1-3 are the scrape tables'
PRIVILEGES = {"refresh_jobs": ("SELECT", "INSERT", "UPDATE"), "refresh_runs": ("SELECT", "INSERT", "UPDATE")}


@dataclass(frozen=True)
class Claim:
    run_id: int | None  # None: the run key is done, or under way elsewhere (a duplicate)
    state: str | None = None  # for a duplicate: ok | running
    started_at: datetime | None = None


@dataclass(frozen=True)
class Streak:
    before: int  # consecutive failures before this run
    after: int  # ... and after it


# Create the job's row if new, then the run's, unless its key is already done (ok) or under
# way (running, started less than :lease seconds ago: a run past its time budget died).
CLAIM = """
WITH job AS (
    INSERT INTO refresh_jobs (name) VALUES (:name)
    ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
    RETURNING id
)
INSERT INTO refresh_runs AS r (job_id, run_key, started_at, outcome)
SELECT id, :key, :at, 'running' FROM job
ON CONFLICT (job_id, run_key) DO UPDATE
    SET started_at = EXCLUDED.started_at, ended_at = NULL, outcome = 'running', via = NULL, rows = NULL,
        error = NULL, attempts = r.attempts + 1
    WHERE r.outcome = 'error'
       OR r.outcome = 'running' AND r.started_at < EXCLUDED.started_at - make_interval(secs => :lease)
RETURNING r.id
"""

CLAIMED_BY = """
SELECT r.outcome, r.started_at FROM refresh_runs r JOIN refresh_jobs j ON j.id = r.job_id
WHERE j.name = :name AND r.run_key = :key
"""


def claim(con, name: str, key: str | None, at: datetime, lease: float) -> Claim:
    key = storable(key)
    with transaction(con):
        rows = con.run(CLAIM, name=name, key=key, at=at, lease=float(lease))
        return Claim(rows[0][0]) if rows else Claim(None, *con.run(CLAIMED_BY, name=name, key=key)[0])


def finish(con, run_id: int, at: datetime, ok: bool, via: str | None, rows: int | None,
           error: str | None) -> Streak:
    """Record how a claimed run ended, and the job's failure streak before and after it."""
    via, error = storable(via), storable(error)
    with transaction(con):
        job_id, key, streak, last_error_key = con.run(
            "SELECT j.id, r.run_key, j.error_streak, j.last_error_key FROM refresh_runs r"
            " JOIN refresh_jobs j ON j.id = r.job_id WHERE r.id = :run FOR UPDATE OF j", run=run_id)[0]
        retry = key is not None and key == last_error_key  # this run failed before: not a new failure
        after = 0 if ok else streak + (0 if retry else 1)
        con.run("UPDATE refresh_runs SET ended_at = :at, outcome = :outcome, via = :via, rows = :rows,"
                " error = :error WHERE id = :run",
                at=at, outcome="ok" if ok else "error", via=via, rows=rows, error=error, run=run_id)
        if ok:
            con.run("UPDATE refresh_jobs SET error_streak = 0, last_ok_at = :at WHERE id = :job", at=at, job=job_id)
        else:
            con.run("UPDATE refresh_jobs SET error_streak = :streak, last_error = :error, last_error_at = :at,"
                    " last_error_key = :key WHERE id = :job", streak=after, error=error, at=at, key=key, job=job_id)
    return Streak(streak, after)


def last_runs(con, names: list[str]) -> dict:
    """name -> when the job's last run started, for overdue jobs."""
    rows = con.run("""
        SELECT j.name, max(r.started_at) FROM refresh_jobs j JOIN refresh_runs r ON r.job_id = j.id
        WHERE j.name IN (SELECT json_array_elements_text(CAST(:names AS json))) GROUP BY j.name
    """, names=json.dumps(names))
    return {name: at for name, at in rows}


# --- the history report (shared/refresh/report.py reads its section through these) -----------

# Per refresh job: its streak and last outcomes, its count of runs, its first run (the schedule's
# slots count from there) and its latest run, which may be older than the window (a stopped
# job's "no run since"). The index on (job_id, started_at) serves both lookups.
REPORT_JOBS = """
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
REPORT_DAYS = """
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
REPORT_BUCKETS = """
SELECT job_id, floor(extract(epoch FROM started_at - :since) / :bucket)::int AS k,
       count(*) FILTER (WHERE outcome = 'ok'), count(*) FILTER (WHERE outcome = 'error'),
       count(*) FILTER (WHERE outcome NOT IN ('ok', 'error'))
FROM refresh_runs WHERE started_at >= :since GROUP BY job_id, k
"""

# Gaps between a job's runs in the window longer than its limit (:limits, JSON: name ->
# seconds): each job's newest :keep gaps and its count.
REPORT_GAPS = """
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

# The refresh tables' part of the database's account: rows, and refresh_runs' growth since
# :since (its size times the share of its rows from then); when its history began.
REPORT_TABLES = """
WITH runs AS (
    SELECT count(*) AS n, CAST(count(*) FILTER (WHERE started_at >= :since) AS float8) AS new, min(started_at) AS began
    FROM refresh_runs
)
SELECT (SELECT count(*) FROM refresh_jobs), runs.n,
       coalesce(pg_total_relation_size('refresh_runs') * runs.new / nullif(runs.n, 0), 0), runs.began
FROM runs
"""


def report_jobs(con) -> list:
    return con.run(REPORT_JOBS)


def report_days(con, since: datetime, period: int) -> list:
    return con.run(REPORT_DAYS, since=since, period=period)


def report_buckets(con, since: datetime, bucket: int) -> list:
    return con.run(REPORT_BUCKETS, since=since, bucket=bucket)


def report_gaps(con, since: datetime, limits: str, keep: int) -> list:
    return con.run(REPORT_GAPS, since=since, limits=limits, keep=keep)


def report_tables(con, since: datetime) -> tuple:
    """(jobs, runs, bytes grown since `since`, history's start)."""
    return tuple(con.run(REPORT_TABLES, since=since)[0])


# --- the history tools (shared/app/history_tools.py: list, delete) -------------------------------

# Per refresh job: runs, first and last, failure streak,
# stored bytes.
HISTORY_LIST = """
SELECT j.name, count(r.id), min(r.started_at), max(r.started_at), j.error_streak, coalesce(sum(pg_column_size(r.*)), 0)
FROM refresh_jobs j LEFT JOIN refresh_runs r ON r.job_id = j.id
GROUP BY j.id ORDER BY j.name
"""
HISTORY_SIZE = """
SELECT j.id, count(r.id), coalesce(sum(pg_column_size(r.*)), 0)
FROM refresh_jobs j LEFT JOIN refresh_runs r ON r.job_id = j.id WHERE j.name = :name GROUP BY j.id
"""
HISTORY_DELETE = "DELETE FROM refresh_jobs WHERE name = :name"


def history_list(con) -> list:
    """(name, runs, None (a refresh has no changes), first run, last run, failure streak, stored
    bytes) per refresh job."""
    return [(name, runs, None, first, last, streak, size) for name, runs, first, last, streak, size
            in con.run(HISTORY_LIST)]


def history_size(con, name: str) -> tuple[list[str], int] | None:
    """What refresh job `name`'s history holds: its runs in words, its stored bytes (None: no such job)."""
    rows = con.run(HISTORY_SIZE, name=name)
    return ([plural(rows[0][1], "run")], rows[0][2]) if rows else None


def delete_job(con, name: str) -> None:
    con.run(HISTORY_DELETE, name=name)
