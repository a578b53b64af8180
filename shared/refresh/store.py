"""Refresh run history in PostgreSQL: all SQL for the refresh tables lives here.

One row per run in `refresh_runs` (job, run key, start, end, outcome, how it ran, rows, error)
and one per job in `refresh_jobs` (its failure streak, for alerts and the report). A run is
claimed before CARTO is called: a redelivered scheduled event (same run key) whose run is done
or still under way claims nothing and is a duplicate; a run that failed may be tried again
under its key, and that retry is not a second failure.
"""

from dataclasses import dataclass
from datetime import datetime

from shared.core.db import storable, transaction

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
        WHERE j.name = ANY(CAST(:names AS text[])) GROUP BY j.name
    """, names=names)
    return {name: at for name, at in rows}
