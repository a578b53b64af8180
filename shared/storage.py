"""Scrape history in PostgreSQL: all SQL for the scrape tables lives here.

The seed article kept one row per distinct page content with an ever-growing `seen_at`
array. Appending to that array rewrites all of it on every check (TOAST values are
immutable), so a check's cost grows with the page's history. We keep the seed's shape as
the view `scraps` (one row per distinct content, `seen_at` holding every check time, so the
seed's breakdown query runs verbatim) but store the times in bounded segments: a check
rewrites at most SEGMENT_SIZE timestamps, whatever the history's length.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime

SEGMENT_SIZE = 200  # timestamps per segment: 1.6 kB, small enough to stay out of TOAST
RECENT_KEYS = 300  # run keys remembered per target: over two days of 10-minute runs
ERROR_HISTORY = 2000  # failed checks remembered per target (for the report): two weeks of 10-minute runs

MIGRATIONS = [
    # 1: targets, contents, segmented check times, and the seed-shaped view.
    """
    -- One row per watched target (a scrape job or an ad-hoc URL), found by its name.
    CREATE TABLE scrape_targets (
        id              serial PRIMARY KEY,
        name            text NOT NULL UNIQUE,
        url             text NOT NULL,
        last_content_id int,              -- content of the last successful check
        last_ok_at      timestamptz,
        last_changed_at timestamptz,
        error_streak    int NOT NULL DEFAULT 0,  -- consecutive failed checks
        last_error      text,
        last_error_at   timestamptz,
        last_error_key  text,             -- run key of the last failure: a retry is not a new failure
        recent_keys     text[] NOT NULL DEFAULT '{}'  -- run keys already recorded (idempotency)
    );

    -- One row per distinct content of a target; hash = sha256 of the body.
    CREATE TABLE scrape_contents (
        id         serial PRIMARY KEY,
        target_id  int NOT NULL REFERENCES scrape_targets ON DELETE CASCADE,
        hash       bytea NOT NULL,
        body       text NOT NULL,
        checks     int NOT NULL,          -- how many checks saw it (picks the segment)
        first_seen timestamptz NOT NULL,
        last_seen  timestamptz NOT NULL,
        UNIQUE (target_id, hash)
    );

    -- The check times of a content, SEGMENT_SIZE per row.
    CREATE TABLE scrape_seen (
        content_id int NOT NULL REFERENCES scrape_contents ON DELETE CASCADE,
        segment    int NOT NULL,
        seen_at    timestamptz[] NOT NULL,
        PRIMARY KEY (content_id, segment)
    );

    -- The seed's table, as a view: one row per distinct content with all its check times.
    CREATE VIEW scraps AS
    SELECT c.id, t.name AS target, c.hash, c.body,
           ARRAY(SELECT ts FROM scrape_seen s, unnest(s.seen_at) ts
                 WHERE s.content_id = c.id ORDER BY ts) AS seen_at
    FROM scrape_contents c JOIN scrape_targets t ON t.id = c.target_id;
    """,
    # 2: filters and error history, for notifications and the report.
    """
    -- Fingerprint of the job's filter settings at its last successful check: a change of
    -- body after the filters were edited is not a change of the page (no notification).
    ALTER TABLE scrape_targets ADD COLUMN filters text;

    -- One row per failed check (not a retry of the same run), the newest ERROR_HISTORY kept.
    CREATE TABLE scrape_errors (
        target_id int NOT NULL REFERENCES scrape_targets ON DELETE CASCADE,
        at        timestamptz NOT NULL,
        error     text NOT NULL
    );
    CREATE INDEX scrape_errors_target_at ON scrape_errors (target_id, at);
    """,
]


def migrate(con) -> int:
    """Bring the schema up to date; safe to run concurrently and repeatedly. Returns the version."""
    con.run("BEGIN")
    try:
        # One migrator at a time, even when two first runs start together.
        con.run("SELECT pg_advisory_xact_lock(hashtext('scheduled-jobs migrations'))")
        con.run("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        current = con.run("SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0]
        for version, sql in enumerate(MIGRATIONS, 1):
            if version > current:
                con.run(sql)
                con.run("INSERT INTO schema_migrations (version) VALUES (:v)", v=version)
        con.run("COMMIT")
    except Exception:
        con.run("ROLLBACK")
        raise
    return len(MIGRATIONS)


def content_hash(body: str) -> bytes:
    return hashlib.sha256(body.encode("utf-8")).digest()


@dataclass(frozen=True)
class Recorded:
    outcome: str  # new | unchanged | changed | duplicate
    content_id: int | None = None
    previous_body: str | None = None  # the content before, when changed (for the diff)
    filters_changed: bool = False  # the filters differ from those of the previous check
    previous_streak: int = 0  # consecutive failures before this check


@dataclass(frozen=True)
class Failed:
    streak: int  # consecutive failures, this one included
    previous_streak: int  # before it; equal to `streak` when this retried the same run


def record_check(con, name: str, url: str, body: str, at: datetime, key: str | None = None,
                 filters: str | None = None) -> Recorded:
    """Store one successful check of target `name` in its own transaction.

    `filters` fingerprints the job's filter settings (None: not tracked)."""
    con.run("BEGIN")
    try:
        target = _lock_target(con, name, url, key)
        if target.duplicate:
            con.run("ROLLBACK")
            return Recorded("duplicate")
        content_id = con.run(RECORD_CHECK, target=target.id, hash=content_hash(body), body=body,
                             at=at, key=key, keep=RECENT_KEYS, segment_size=SEGMENT_SIZE, filters=filters)[0][0]
        changed = target.last_content_id is not None and content_id != target.last_content_id
        previous_body = None
        if changed:
            previous_body = con.run("SELECT body FROM scrape_contents WHERE id = :id", id=target.last_content_id)[0][0]
        con.run("COMMIT")
    except Exception:
        con.run("ROLLBACK")
        raise
    outcome = "new" if target.last_content_id is None else "changed" if changed else "unchanged"
    filters_changed = filters is not None and target.filters != filters
    return Recorded(outcome, content_id, previous_body, filters_changed, target.error_streak)


def record_failure(con, name: str, url: str, error: str, at: datetime, key: str | None = None) -> Failed | None:
    """Note a failed check on its target; no content is stored. None if `key` was already recorded."""
    con.run("BEGIN")
    try:
        target = _lock_target(con, name, url, key)
        streak = None
        if not target.duplicate:
            streak = con.run(RECORD_FAILURE, target=target.id, error=error, at=at, key=key,
                             keep=ERROR_HISTORY)[0][0]
        con.run("COMMIT")
    except Exception:
        con.run("ROLLBACK")
        raise
    return None if streak is None else Failed(streak, target.error_streak)


@dataclass(frozen=True)
class _Target:
    id: int
    last_content_id: int | None
    duplicate: bool  # this run key was already recorded
    error_streak: int
    filters: str | None


def _lock_target(con, name: str, url: str, key: str | None) -> _Target:
    # ON CONFLICT DO UPDATE locks the target's row until commit, so runs of one target
    # take turns: no lost check, no duplicate content row, and the key test below is exact.
    row = con.run(
        """
        INSERT INTO scrape_targets (name, url) VALUES (:name, :url)
        ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url
        RETURNING id, last_content_id, coalesce(:key = ANY(recent_keys), false), error_streak, filters
        """,
        name=name, url=url, key=key,
    )[0]
    return _Target(*row)


# Record one successful check: add the content if this target never had it, append the
# check time to the content's newest segment, and point the target at the content.
RECORD_CHECK = """
WITH content AS (
    INSERT INTO scrape_contents AS c (target_id, hash, body, checks, first_seen, last_seen)
    VALUES (:target, :hash, :body, 1, :at, :at)
    ON CONFLICT (target_id, hash) DO UPDATE
        SET checks = c.checks + 1, last_seen = EXCLUDED.last_seen
    RETURNING id, checks
), seen AS (
    INSERT INTO scrape_seen AS s (content_id, segment, seen_at)
    SELECT id, (checks - 1) / CAST(:segment_size AS int), ARRAY[CAST(:at AS timestamptz)] FROM content
    ON CONFLICT (content_id, segment) DO UPDATE SET seen_at = s.seen_at || EXCLUDED.seen_at
)
UPDATE scrape_targets t SET
    last_changed_at = CASE WHEN t.last_content_id IS DISTINCT FROM content.id
                           THEN CAST(:at AS timestamptz) ELSE t.last_changed_at END,
    last_content_id = content.id,
    last_ok_at = :at,
    error_streak = 0,
    filters = coalesce(CAST(:filters AS text), t.filters),
    -- newest key first, the list trimmed to :keep entries
    recent_keys = CASE WHEN CAST(:key AS text) IS NULL THEN t.recent_keys
                       ELSE trim_array(CAST(:key AS text) || t.recent_keys,
                                       greatest(0, cardinality(t.recent_keys) + 1 - :keep))
                  END
FROM content WHERE t.id = :target
RETURNING content.id
"""

# A failure: keep the error and extend the streak, unless it is a retry of the same run;
# a new failure also goes into the error history, trimmed to its newest :keep rows (the
# DELETE sees the rows from before this INSERT, hence keep - 1 of them plus the new one).
RECORD_FAILURE = """
WITH target AS (
    UPDATE scrape_targets SET
        error_streak = error_streak + CASE WHEN last_error_key = CAST(:key AS text) THEN 0 ELSE 1 END,
        last_error = :error,
        last_error_at = :at,
        last_error_key = :key
    WHERE id = :target
    RETURNING error_streak, (SELECT last_error_key FROM scrape_targets WHERE id = :target) AS old_key
), logged AS (
    INSERT INTO scrape_errors (target_id, at, error)
    SELECT :target, :at, :error FROM target WHERE CAST(:key AS text) IS NULL OR old_key IS DISTINCT FROM CAST(:key AS text)
), trimmed AS (
    DELETE FROM scrape_errors WHERE target_id = :target AND at < (
        SELECT at FROM scrape_errors WHERE target_id = :target ORDER BY at DESC OFFSET greatest(CAST(:keep AS int) - 2, 0) LIMIT 1)
)
SELECT error_streak FROM target
"""
