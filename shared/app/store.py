"""The tables of the app layer itself (no kind's): what it takes for failures around the jobs to
reach a person once, not at every run. All their SQL is here.

- run_alerts: a kind whose runs fail as a whole (the jobs file, the database, a bug), since when,
  and whether its one alert went out; a successful run deletes the row and sends the recovery.
- job_watch: every job of the jobs file, any kind, since when it is known, and whether it is
  overdue (its runs stopped, or never began) and alerted.
- notification_failures: the last notification of a job that could not be delivered, for the
  report.
"""

import json
from datetime import datetime

# Versions in the schema's one sequence (shared/app/schema.py): scrape has 1-3 and 5, refresh 4.
MIGRATIONS = {
    6: """
    CREATE TABLE IF NOT EXISTS run_alerts (
        kind          text PRIMARY KEY,
        failing_since timestamptz NOT NULL,
        runs          int NOT NULL DEFAULT 1,       -- failed runs in a row
        alerted_at    timestamptz,                  -- NULL: the alert is still to send
        last_error    text NOT NULL
    );
    CREATE TABLE IF NOT EXISTS notification_failures (
        kind   text NOT NULL,
        name   text NOT NULL,
        at     timestamptz NOT NULL,
        reason text NOT NULL,
        PRIMARY KEY (kind, name)
    );
    """,
    7: """
    CREATE TABLE IF NOT EXISTS job_watch (
        kind          text NOT NULL,
        name          text NOT NULL,
        first_seen    timestamptz NOT NULL DEFAULT now(),  -- first run that found it in the jobs file
        overdue_since timestamptz,                          -- NULL: runs as scheduled
        alerted_at    timestamptz,
        PRIMARY KEY (kind, name)
    );
    """,
}


# --- runs that fail as a whole --------------------------------------------------------------

def run_failed(con, kind: str, error: str) -> tuple[int, bool]:
    """Record a failed run of `kind`: (failed runs in a row, whether its alert is still to send)."""
    runs, alerted = con.run("""
        INSERT INTO run_alerts AS a (kind, failing_since, last_error) VALUES (:kind, now(), :error)
        ON CONFLICT (kind) DO UPDATE SET runs = a.runs + 1, last_error = EXCLUDED.last_error
        RETURNING runs, alerted_at IS NOT NULL
    """, kind=kind, error=error)[0]
    return runs, not alerted


def run_alerted(con, kind: str) -> None:
    con.run("UPDATE run_alerts SET alerted_at = now() WHERE kind = :kind", kind=kind)


def run_succeeded(con, kind: str) -> tuple[datetime, int, bool] | None:
    """A successful run of `kind` ends its failing streak: (since, failed runs, whether it was
    alerted), or None when there was none."""
    rows = con.run("DELETE FROM run_alerts WHERE kind = :kind RETURNING failing_since, runs, alerted_at IS NOT NULL",
                   kind=kind)
    return tuple(rows[0]) if rows else None


# --- notifications that could not be delivered -------------------------------------------------

def notification_failed(con, kind: str, name: str, reason: str) -> None:
    con.run("""
        INSERT INTO notification_failures (kind, name, at, reason) VALUES (:kind, :name, now(), :reason)
        ON CONFLICT (kind, name) DO UPDATE SET at = now(), reason = EXCLUDED.reason
    """, kind=kind, name=name, reason=reason)


def notification_failures(con) -> list[tuple[str, str, datetime, str]]:
    """(kind, name, when, reason) of every job whose last notification failed, newest first."""
    return [tuple(row) for row in con.run(
        "SELECT kind, name, at, reason FROM notification_failures ORDER BY at DESC, kind, name LIMIT 100")]


# --- overdue jobs -----------------------------------------------------------------------------

def watched(con, jobs: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[datetime, datetime | None, bool]]:
    """Every (kind, name) of the jobs file, known from now on if new: (first seen, overdue since,
    alerted) each."""
    # One statement, the jobs as one JSON text (pg8000 sends a list of 500 names as an array
    # slowly). A job taken out of the file is no longer watched; a new one is from now on.
    rows = con.run("""
        WITH j AS (SELECT j->>0 AS kind, j->>1 AS name FROM json_array_elements(CAST(:jobs AS json)) AS j),
        gone AS (DELETE FROM job_watch w WHERE (w.kind, w.name) NOT IN (SELECT kind, name FROM j)),
        added AS (INSERT INTO job_watch (kind, name) SELECT kind, name FROM j ON CONFLICT (kind, name) DO NOTHING
                  RETURNING kind, name, first_seen, overdue_since, alerted_at)
        SELECT w.kind, w.name, w.first_seen, w.overdue_since, w.alerted_at IS NOT NULL
        FROM job_watch w JOIN j USING (kind, name)
        UNION ALL
        SELECT kind, name, first_seen, overdue_since, alerted_at IS NOT NULL FROM added
    """, jobs=json.dumps(jobs))
    return {(kind, name): (first, since, alerted) for kind, name, first, since, alerted in rows}


def mark_overdue(con, kind: str, name: str) -> bool:
    """Mark a job overdue; True when this run is the one to alert (it was not overdue, or its
    alert is still to send). Only one of two runs at once gets True."""
    rows = con.run("""
        UPDATE job_watch SET overdue_since = coalesce(overdue_since, now()), alerted_at = now()
        WHERE kind = :kind AND name = :name AND alerted_at IS NULL RETURNING 1
    """, kind=kind, name=name)
    return bool(rows)


def mark_running(con, kind: str, name: str) -> bool:
    """A job runs again: True when it had been alerted as overdue (its recovery is to send)."""
    rows = con.run("""
        UPDATE job_watch w SET overdue_since = NULL, alerted_at = NULL
        FROM (SELECT alerted_at FROM job_watch WHERE kind = :kind AND name = :name FOR UPDATE) AS was
        WHERE w.kind = :kind AND w.name = :name AND w.overdue_since IS NOT NULL
        RETURNING was.alerted_at IS NOT NULL
    """, kind=kind, name=name)
    return bool(rows and rows[0][0])


def overdue(con) -> list[tuple[str, str, datetime]]:
    """(kind, name, overdue since) of every job overdue now, for the report."""
    return [tuple(row) for row in con.run(
        "SELECT kind, name, overdue_since FROM job_watch WHERE overdue_since IS NOT NULL ORDER BY overdue_since")]


def has_monitor_tables(con) -> bool:
    """Whether the monitor's tables exist yet (a report may read a database no run has prepared)."""
    return con.run("SELECT to_regclass('job_watch') IS NOT NULL AND to_regclass('notification_failures') IS NOT NULL")[0][0]


def database_size(con) -> int:
    return con.run("SELECT pg_database_size(current_database())")[0][0]
