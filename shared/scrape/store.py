"""Scrape history in PostgreSQL: all SQL for the scrape tables lives here.

The seed article kept one row per distinct page content with an ever-growing `seen_at`
array. Appending to that array rewrites all of it on every check (TOAST values are
immutable), so a check's cost grows with the page's history. We keep the seed's shape as
the view `scraps` (one row per distinct content, `seen_at` holding every check time, so the
seed's breakdown query runs verbatim) but store the times in bounded segments: a check
rewrites at most SEGMENT_SIZE timestamps, whatever the history's length.
"""

import json
from dataclasses import dataclass, replace
from datetime import datetime

from shared.core import log
from shared.core.db import storable, transaction
from shared.core.text import plural

SEGMENT_SIZE = 200  # timestamps per segment: 1.6 kB, small enough to stay out of TOAST
RECENT_KEYS = 300  # run keys remembered per target: over two days of 10-minute runs
ERROR_HISTORY = 2000  # failed checks remembered per target (for the report): two weeks of 10-minute runs

# The scrape tables' schema changes, versions 1-3 of the one schema (shared/app/schema.py applies
# every kind's in the order of their versions).
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
    # 3: validators for conditional requests.
    """
    -- ETag and Last-Modified of the last successful answer, sent back as If-None-Match and
    -- If-Modified-Since: a 304 then counts as an unchanged check and carries no body.
    ALTER TABLE scrape_targets ADD COLUMN etag text, ADD COLUMN last_modified text;
    """,
]
FIRST_VERSION = 1
# Later scrape migrations, each at the version it takes in the one schema (4 is refresh's).
LATER_MIGRATIONS = {
    5: """
    -- The checks whose new content came from an edit of the job's filters, not from the page
    -- (see `filters` above): not notified, and left out of the feed of changes. The newest
    -- FILTER_EDIT_HISTORY are kept per target.
    CREATE TABLE scrape_filter_edits (
        target_id int NOT NULL REFERENCES scrape_targets ON DELETE CASCADE,
        at        timestamptz NOT NULL,  -- the check's time, as in scrape_seen
        PRIMARY KEY (target_id, at)
    );
    """,
}
FILTER_EDIT_HISTORY = 100  # filters are edited by hand: a hundred edits is years of them
# What a run needs on each table (error history is trimmed with DELETE).
PRIVILEGES = {"scrape_targets": ("SELECT", "INSERT", "UPDATE"), "scrape_contents": ("SELECT", "INSERT", "UPDATE"),
              "scrape_seen": ("SELECT", "INSERT", "UPDATE"), "scrape_errors": ("SELECT", "INSERT", "UPDATE", "DELETE"),
              "scrape_filter_edits": ("SELECT", "INSERT", "DELETE")}


@dataclass(frozen=True)
class Check:
    """One check to store: a fetched (and filtered) body, a 304 (the content of the last check,
    seen again), or an error."""
    name: str
    url: str
    at: datetime
    body: str | None = None
    error: str | None = None
    not_modified: bool = False
    filters: str | None = None  # fingerprint of the job's filters (None: not tracked)
    etag: str | None = None  # validators for the next conditional request
    last_modified: str | None = None
    base: int | None = None  # for a 304: the content its validators came from
    seconds: float | None = None  # how long fetching and filtering took (not stored: the result line's)
    hold: object = None  # its share of the run's memory budget (shared/scrape/memory.py), not stored


@dataclass(frozen=True)
class Recorded:
    outcome: str  # new | unchanged | changed | duplicate
    content_id: int | None = None
    previous_body: str | None = None  # the content before, when changed (for the diff)
    filters_changed: bool = False  # the filters differ from those of the previous check
    previous_streak: int = 0  # consecutive failures before this check


# A 304 whose content is gone: the history was deleted (or replaced) while the check ran. It
# cannot be stored as a check of nothing; the run fetches the page again, without validators.
STALE = Recorded("stale")


@dataclass(frozen=True)
class Failed:
    streak: int  # consecutive failures, this one included
    previous_streak: int  # before it; equal to `streak` when this retried the same run


@dataclass(frozen=True)
class TargetState:
    """What the next check of a target needs to know before fetching."""
    has_content: bool
    recorded: bool  # the run key is already recorded
    filters: str | None
    etag: str | None
    last_modified: str | None
    content_id: int | None = None  # the current content, which a 304 would be a check of


def target_states(con, names: list[str], key: str | None) -> dict[str, TargetState]:
    """One query for a whole run: which targets are done for this run key, and their validators."""
    rows = con.run(
        """
        SELECT name, last_content_id IS NOT NULL, coalesce(CAST(:key AS text) = ANY(recent_keys), false),
               filters, etag, last_modified, last_content_id
        FROM scrape_targets WHERE name = ANY(CAST(:names AS text[]))
        """, names=names, key=key) if names else []
    return {row[0]: TargetState(*row[1:]) for row in rows}


def record_check(con, name: str, url: str, body: str, at: datetime, key: str | None = None,
                 filters: str | None = None) -> Recorded:
    """Store one successful check of target `name` in its own transaction."""
    return record_batch(con, [Check(name, url, at, body=body, filters=filters)], key)[0]


def record_failure(con, name: str, url: str, error: str, at: datetime, key: str | None = None) -> Failed | None:
    """Note a failed check on its target; no content is stored. None if `key` was already recorded."""
    return record_batch(con, [Check(name, url, at, error=error)], key)[0]


def record_batch(con, checks: list[Check], key: str | None = None) -> list[Recorded | Failed | None]:
    """Store many checks (of distinct targets) in one transaction, in at most six round trips
    whatever their number (seven when a job's filters were edited). Returns, per check: Recorded for a success (outcome "duplicate" if
    `key` was already recorded), Failed for a failure, None for an already recorded failure."""
    # Whatever a page or an event carried: no secret (a page may echo the URL a ${VAR} went
    # into), and text PostgreSQL can hold (no NUL, no lone surrogate) so it cannot fail a batch.
    checks = [replace(c, url=_clean(c.url), body=_clean(c.body), error=_clean(c.error),
                      etag=_clean(c.etag), last_modified=_clean(c.last_modified)) for c in checks]
    key = storable(key)
    with transaction(con):
        return _record_batch(con, checks, key)


def _clean(text: str | None) -> str | None:
    return storable(log.redact(text)) if text else text


def _record_batch(con, checks: list[Check], key: str | None) -> list:
    targets = {row[1]: _Target(row[0], *row[2:]) for row in con.run(
        LOCK_TARGETS, names=[c.name for c in checks], urls=[c.url for c in checks], key=key)}
    stale = {c.name for c in checks if c.not_modified and not targets[c.name].duplicate and (
        targets[c.name].last_content_id is None or c.base is not None and c.base != targets[c.name].last_content_id)}
    ok = [c for c in checks if c.error is None and not targets[c.name].duplicate and c.name not in stale]
    failed = [c for c in checks if c.error is not None and not targets[c.name].duplicate]
    content_of = {}
    if ok:
        rows = con.run(RECORD_CHECKS, checks=_json_rows(
            {"target_id": targets[c.name].id, "at": c.at.isoformat(), "filters": c.filters,
             "body": None if c.not_modified else c.body,
             "same": targets[c.name].last_content_id if c.not_modified else 0,
             "etag": c.etag, "last_modified": c.last_modified} for c in ok),
            key=key, keep=RECENT_KEYS, segment_size=SEGMENT_SIZE)
        content_of = dict(rows)
        if len(content_of) != len(ok):
            raise RuntimeError(f"recorded {len(content_of)} of {len(ok)} checks")
    retries = {c.name for c in failed if key is not None and targets[c.name].last_error_key == key}
    if failed:
        con.run(RECORD_FAILURES, key=key, keep=ERROR_HISTORY, failures=_json_rows(
            {"target_id": targets[c.name].id, "error": c.error, "at": c.at.isoformat(), "new": c.name not in retries}
            for c in failed))
    changed_from = {targets[c.name].last_content_id for c in ok if targets[c.name].last_content_id is not None
                    and content_of[targets[c.name].id] != targets[c.name].last_content_id}
    previous_bodies = dict(con.run("SELECT id, body FROM scrape_contents WHERE id = ANY(CAST(:ids AS int[]))",
                                   ids=sorted(changed_from))) if changed_from else {}
    results = []
    for c in checks:
        target = targets[c.name]
        if target.duplicate:
            results.append(Recorded("duplicate") if c.error is None else None)
        elif c.name in stale:
            results.append(STALE)
        elif c.error is not None:
            retry = c.name in retries
            results.append(Failed(target.error_streak + (0 if retry else 1), target.error_streak))
        else:
            content_id = content_of[target.id]
            if target.last_content_id is None:
                outcome = "new"
            else:
                outcome = "unchanged" if content_id == target.last_content_id else "changed"
            results.append(Recorded(
                outcome, content_id, previous_bodies.get(target.last_content_id) if outcome == "changed" else None,
                c.filters is not None and target.filters != c.filters, target.error_streak))
    edits = [{"target_id": targets[c.name].id, "at": c.at.isoformat()} for c, r in zip(checks, results)
             if isinstance(r, Recorded) and r.outcome == "changed" and r.filters_changed]
    if edits:
        con.run(RECORD_FILTER_EDITS, edits=_json_rows(edits), keep=FILTER_EDIT_HISTORY)
    return results


def _json_rows(rows) -> str:
    """A batch as one JSON parameter: json.dumps is far cheaper than the driver's escaping of
    array parameters element by element (a 100-page batch is about 200 kB of bodies)."""
    return json.dumps(list(rows), ensure_ascii=False)  # not 6 bytes per non-ASCII character


@dataclass(frozen=True)
class _Target:
    id: int
    last_content_id: int | None
    duplicate: bool  # this run key was already recorded
    error_streak: int
    filters: str | None
    last_error_key: str | None


# Create missing targets and lock all of them until commit, so runs of one target take
# turns: no lost check, no duplicate content row, and the run-key test is exact. Sorting by
# name gives every run the same lock order, so two runs never deadlock.
LOCK_TARGETS = """
INSERT INTO scrape_targets (name, url)
SELECT name, url FROM unnest(CAST(:names AS text[]), CAST(:urls AS text[])) AS i(name, url) ORDER BY name
ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url
RETURNING id, name, last_content_id, coalesce(CAST(:key AS text) = ANY(recent_keys), false),
          error_streak, filters, last_error_key
"""

# Record successful checks: add each content its target never had (or, for a 304, take the
# target's last content), append the check time to the content's newest segment, and point
# the target at it. `same` is the last content's id for a 304, 0 otherwise. The hash is
# sha256 of the UTF-8 body.
RECORD_CHECKS = """
WITH input AS (
    SELECT * FROM json_to_recordset(CAST(:checks AS json))
        AS i(target_id int, body text, at timestamptz, same int, filters text, etag text, last_modified text)
), fetched AS (
    INSERT INTO scrape_contents AS c (target_id, hash, body, checks, first_seen, last_seen)
    SELECT target_id, sha256(convert_to(body, 'UTF8')), body, 1, at, at FROM input WHERE same = 0
    ON CONFLICT (target_id, hash) DO UPDATE
        SET checks = c.checks + 1, last_seen = EXCLUDED.last_seen
    RETURNING id, target_id, checks
), not_modified AS (
    UPDATE scrape_contents c SET checks = c.checks + 1, last_seen = input.at
    FROM input WHERE c.id = input.same
    RETURNING c.id, c.target_id, c.checks
), content AS (
    SELECT * FROM fetched UNION ALL SELECT * FROM not_modified
), seen AS (
    INSERT INTO scrape_seen AS s (content_id, segment, seen_at)
    SELECT content.id, (content.checks - 1) / CAST(:segment_size AS int), ARRAY[input.at]
    FROM content JOIN input USING (target_id)
    ON CONFLICT (content_id, segment) DO UPDATE SET seen_at = s.seen_at || EXCLUDED.seen_at
)
UPDATE scrape_targets t SET
    last_changed_at = CASE WHEN t.last_content_id IS DISTINCT FROM content.id
                           THEN input.at ELSE t.last_changed_at END,
    last_content_id = content.id,
    last_ok_at = input.at,
    error_streak = 0,
    filters = coalesce(input.filters, t.filters),
    -- a 304 may omit the validators: keep the ones it answered
    etag = CASE WHEN input.same = 0 THEN input.etag ELSE coalesce(input.etag, t.etag) END,
    last_modified = CASE WHEN input.same = 0 THEN input.last_modified
                         ELSE coalesce(input.last_modified, t.last_modified) END,
    -- newest key first, the list trimmed to :keep entries
    recent_keys = CASE WHEN CAST(:key AS text) IS NULL THEN t.recent_keys
                       ELSE trim_array(CAST(:key AS text) || t.recent_keys,
                                       greatest(0, cardinality(t.recent_keys) + 1 - :keep))
                  END
FROM content JOIN input USING (target_id)
WHERE t.id = content.target_id
RETURNING t.id, content.id
"""

# Record failures: keep each error and extend its target's streak, unless it retries the
# same run (`new` false); a new failure also goes into the error history, trimmed to the
# newest :keep rows per target (the DELETE sees the rows from before this INSERT).
RECORD_FAILURES = """
WITH input AS (
    SELECT * FROM json_to_recordset(CAST(:failures AS json)) AS i(target_id int, error text, at timestamptz, new boolean)
), target AS (
    UPDATE scrape_targets t SET
        error_streak = t.error_streak + CASE WHEN input.new THEN 1 ELSE 0 END,
        last_error = input.error,
        last_error_at = input.at,
        last_error_key = :key
    FROM input WHERE t.id = input.target_id
), logged AS (
    INSERT INTO scrape_errors (target_id, at, error)
    SELECT target_id, at, error FROM input WHERE new
)
DELETE FROM scrape_errors e USING (
    SELECT target_id, at, row_number() OVER (PARTITION BY target_id ORDER BY at DESC) AS newer
    FROM scrape_errors WHERE target_id IN (SELECT target_id FROM input WHERE new)
) old
WHERE e.target_id = old.target_id AND e.at = old.at AND old.newer >= CAST(:keep AS int)
"""

# Note the checks whose content changed because the filters were edited, and keep the newest
# :keep per target (the DELETE sees the rows from before this INSERT).
RECORD_FILTER_EDITS = """
WITH input AS (
    SELECT * FROM json_to_recordset(CAST(:edits AS json)) AS i(target_id int, at timestamptz)
), added AS (
    INSERT INTO scrape_filter_edits (target_id, at) SELECT target_id, at FROM input ON CONFLICT DO NOTHING
)
DELETE FROM scrape_filter_edits e USING (
    SELECT target_id, at, row_number() OVER (PARTITION BY target_id ORDER BY at DESC) AS newer
    FROM scrape_filter_edits WHERE target_id IN (SELECT target_id FROM input)
) old
WHERE e.target_id = old.target_id AND e.at = old.at AND old.newer >= CAST(:keep AS int)
"""

# --- The seed article's table, found where our view belongs ------------------------------

# What holds the name `scraps`: its kind ('r' table, 'p' partitioned, 'v' view, ...) and its
# columns as "name type", in order. No row when nothing is called scraps.
SCRAPS_SHAPE = """
SELECT c.relkind::text, array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = to_regclass('scraps')
GROUP BY c.relkind
"""
# The seed's columns (its CREATE TABLE: id serial, hash bytea, body text, seen_at timestamptz[]).
SEED_COLUMNS = {"hash bytea", "body text", "seen_at timestamp with time zone[]"}
SEED_KEPT = "scraps_seed"  # where adoption keeps the seed's table, renamed, untouched


@dataclass(frozen=True)
class ScrapsShape:
    """What is called `scraps` before our schema exists."""
    kind: str  # "table", "view", ...
    columns: list[str]

    @property
    def is_seed(self) -> bool:
        return self.kind == "table" and SEED_COLUMNS <= set(self.columns)


def scraps_shape(con) -> ScrapsShape | None:
    rows = con.run(SCRAPS_SHAPE)
    if not rows:
        return None
    kinds = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "f": "foreign table"}
    return ScrapsShape(kinds.get(rows[0][0], "relation"), list(rows[0][1]))


def seed_counts(con) -> tuple[int, int]:
    """(rows, check times) of the seed's table, still called scraps."""
    return tuple(con.run("SELECT count(*), coalesce(sum(cardinality(seen_at)), 0) FROM scraps")[0])


# --- Pruning: keep N days of history per target --------------------------------------------

@dataclass(frozen=True)
class Pruned:
    """What prune() dropped. Bytes are those of the values stored (bodies, check-time arrays
    and error messages, as PostgreSQL keeps them: compressed when large); PostgreSQL reuses the
    space after its autovacuum, and the database's files do not shrink."""
    targets: int = 0  # targets that lost anything
    versions: int = 0  # contents dropped
    check_times: int = 0
    errors: int = 0
    rows: int = 0  # rows freed, all tables together
    bytes: int = 0


# A run prunes after its checks, so a content's check times are rewritten only once the oldest
# is this far past the cut-off: the current content of a target checked every 10 minutes is
# then rewritten once a day, not on every run. The command line prunes exactly (slack 0).
RUN_SLACK_DAYS = 1
MAX_KEEP_DAYS = 36500  # a hundred years: more is a typo


def prune(con, names_and_days, slack_days: float = RUN_SLACK_DAYS) -> Pruned:
    """Drop each named target's versions and check times older than its number of days, and its
    failed checks older than that, in one transaction; the current version always stays, with at
    least its last check time. `names_and_days`: [(target name, days)] or a dict; names without
    history are ignored. A version last seen before the cut-off is dropped; the others' check
    times are rewritten without the old ones once the oldest is `slack_days` past the cut-off."""
    pairs = sorted(dict(names_and_days).items())
    for name, days in pairs:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_KEEP_DAYS:
            raise ValueError(f"{name}: days to keep must be a whole number from 1 to {MAX_KEEP_DAYS}, not {days!r}")
    if not pairs:
        return Pruned()
    with transaction(con):
        cut = con.run(PRUNE_TARGETS, names=[n for n, _ in pairs], days=[d for _, d in pairs],
                      slack=float(slack_days))
        if not cut:
            return Pruned()
        columns = dict(zip(("ids", "currents", "cutoffs", "rewrite"), map(list, zip(*cut))))
        versions, version_bytes, segments, times, segment_bytes, hit1 = con.run(PRUNE_VERSIONS, **columns)[0]
        old_rows, old_times, old_bytes, new_rows, new_times, new_bytes, hit2 = con.run(
            PRUNE_TIMES, **columns, segment_size=SEGMENT_SIZE)[0]
        errors, error_bytes, hit3 = con.run(PRUNE_ERRORS, ids=columns["ids"], cutoffs=columns["cutoffs"])[0]
    return Pruned(len(set(hit1) | set(hit2) | set(hit3)), versions, times + old_times - new_times, errors,
                  versions + segments + old_rows - new_rows + errors,
                  version_bytes + segment_bytes + old_bytes - new_bytes + error_bytes)


# The targets to prune, locked in name order as LOCK_TARGETS locks them (a run and a prune of
# one target take turns, and never deadlock), each with its current content, its cut-off and
# the time before which its check times get rewritten (the cut-off less the slack).
PRUNE_TARGETS = """
SELECT t.id, t.last_content_id, now() - make_interval(days => i.days),
       now() - make_interval(days => i.days) - make_interval(secs => CAST(:slack AS float8) * 86400)
FROM unnest(CAST(:names AS text[]), CAST(:days AS int[])) AS i(name, days)
JOIN (SELECT id, name, last_content_id FROM scrape_targets ORDER BY name FOR UPDATE) t ON t.name = i.name
"""

# The prune's input, one row per target, for the statements below.
_CUT = """
    SELECT * FROM unnest(CAST(:ids AS int[]), CAST(:currents AS int[]), CAST(:cutoffs AS timestamptz[]),
                         CAST(:rewrite AS timestamptz[])) AS i(target_id, current, cutoff, rewrite_before)
"""

# Drop the versions last seen before the cut-off (never the current one) with their check
# times. Returns: versions, their bytes, segments, check times, the segments' bytes, targets hit.
PRUNE_VERSIONS = f"""
WITH cut AS ({_CUT}), old AS (
    SELECT c.id, c.target_id FROM scrape_contents c JOIN cut USING (target_id)
    WHERE c.id IS DISTINCT FROM cut.current AND c.last_seen < cut.cutoff
), seen AS (
    DELETE FROM scrape_seen s USING old WHERE s.content_id = old.id
    RETURNING cardinality(s.seen_at) AS n, pg_column_size(s.seen_at) AS bytes
), contents AS (
    DELETE FROM scrape_contents c USING old WHERE c.id = old.id
    RETURNING c.target_id, pg_column_size(c.body) AS bytes
)
SELECT (SELECT count(*) FROM contents), (SELECT coalesce(sum(bytes), 0) FROM contents),
       (SELECT count(*) FROM seen), (SELECT coalesce(sum(n), 0) FROM seen), (SELECT coalesce(sum(bytes), 0) FROM seen),
       ARRAY(SELECT DISTINCT target_id FROM contents)
"""

# Rewrite the check times of the contents whose oldest is before `rewrite_before`: their
# segments are replaced by new ones holding the times since the cut-off (the current content
# keeps at least its last), numbered from 0 and full but the last, as RECORD_CHECKS expects
# (it appends to segment (checks - 1) / segment_size), and `checks` and `first_seen` follow.
# The window function reads every deleted segment before the first insert.
PRUNE_TIMES = f"""
WITH cut AS ({_CUT}), redo AS (
    SELECT c.id, c.target_id, c.last_seen, cut.cutoff, c.id = cut.current AS current
    FROM scrape_contents c JOIN cut USING (target_id)
    WHERE c.first_seen < cut.rewrite_before AND c.first_seen < c.last_seen  -- else nothing to drop
), old AS (
    DELETE FROM scrape_seen s USING redo WHERE s.content_id = redo.id
    RETURNING s.content_id, s.seen_at
), kept AS (
    SELECT old.content_id, ts, row_number() OVER (PARTITION BY old.content_id ORDER BY ts) AS k
    FROM old JOIN redo ON redo.id = old.content_id, unnest(old.seen_at) AS ts
    WHERE ts >= redo.cutoff OR redo.current AND ts = redo.last_seen
), new AS (
    INSERT INTO scrape_seen (content_id, segment, seen_at)
    SELECT content_id, (k - 1) / CAST(:segment_size AS int), array_agg(ts ORDER BY ts)
    FROM kept GROUP BY content_id, (k - 1) / CAST(:segment_size AS int)
    RETURNING content_id, cardinality(seen_at) AS n, pg_column_size(seen_at) AS bytes
), contents AS (
    UPDATE scrape_contents c SET checks = k.n, first_seen = k.first
    FROM (SELECT content_id, count(*) AS n, min(ts) AS first FROM kept GROUP BY content_id) k
    WHERE c.id = k.content_id AND c.checks <> k.n
    RETURNING c.target_id
)
SELECT (SELECT count(*) FROM old), (SELECT coalesce(sum(cardinality(seen_at)), 0) FROM old),
       (SELECT coalesce(sum(pg_column_size(seen_at)), 0) FROM old),
       (SELECT count(*) FROM new), (SELECT coalesce(sum(n), 0) FROM new), (SELECT coalesce(sum(bytes), 0) FROM new),
       ARRAY(SELECT DISTINCT target_id FROM contents)
"""

# Drop failed checks from before the cut-off. Returns: errors, their bytes, targets hit.
PRUNE_ERRORS = """
WITH gone AS (
    DELETE FROM scrape_errors e
    USING unnest(CAST(:ids AS int[]), CAST(:cutoffs AS timestamptz[])) AS cut(target_id, cutoff)
    WHERE e.target_id = cut.target_id AND e.at < cut.cutoff
    RETURNING e.target_id, pg_column_size(e.error) AS bytes
)
SELECT count(*), coalesce(sum(bytes), 0), ARRAY(SELECT DISTINCT target_id FROM gone) FROM gone
"""


# --- Changes one by one, newest first (the Atom feed: shared/app/report/feed.py) ------------

@dataclass(frozen=True)
class Change:
    """A check whose content differed from the check before it."""
    target: str  # the target's name
    url: str  # its URL now
    at: datetime  # the check that saw the new content
    content_id: int
    previous_id: int  # the content the check before saw


def changes(con, since: datetime, limit: int) -> tuple[list[Change], int]:
    """The newest `limit` changes of every target since `since`, newest first, and how many there
    were in all. Counted as the report counts them (a check whose content differs from the check
    before, in time), but a change that came from an edit of the job's filters is none, as for
    notifications."""
    rows = con.run(CHANGES, since=since, limit=limit)
    return [Change(*row[:5]) for row in rows], rows[0][5] if rows else 0


def bodies(con, ids: list[int], chars: int) -> dict[int, str]:
    """Contents by id, each cut to its first `chars` + 1 characters (one more: was it cut?)."""
    return dict(con.run("SELECT id, left(body, :chars + 1) FROM scrape_contents WHERE id = ANY(CAST(:ids AS int[]))",
                        ids=ids, chars=chars)) if ids else {}


# Each target's check history since :since in pieces, for the feed's changes (CHANGES) and the
# report's change counts (REPORT_CHANGES). `seg`, without the arrays: the window's segments and
# those that may hold a target's last check before it (its first in the window may be a change):
# the one before a recent content's first in the window, and the last one of the content seen
# last before the window. A segment is `alone` when it overlaps no other: no other content was
# seen between its checks, and it is one piece; else (a page flipping back and forth between
# versions) each of its checks is a piece. In time order, a piece whose content differs from the
# piece before starts with a change.
PIECES = """
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
)"""
# Each change since :since, newest :limit first with the count of all: a piece whose content
# differs from the piece before, unless its check is in scrape_filter_edits.
CHANGES = PIECES + """, changes AS (
    SELECT * FROM (
        SELECT target_id, content_id, first AS at,
               lag(content_id) OVER (PARTITION BY target_id ORDER BY first) AS previous_id
        FROM pieces) p
    WHERE content_id <> previous_id AND at >= :since
      AND NOT EXISTS (SELECT FROM scrape_filter_edits e WHERE e.target_id = p.target_id AND e.at = p.at)
)
SELECT t.name, t.url, c.at, c.content_id, c.previous_id, count(*) OVER ()
FROM changes c JOIN scrape_targets t ON t.id = c.target_id
ORDER BY c.at DESC, t.name LIMIT :limit
"""


def last_runs(con, names: list[str]) -> dict:
    """name -> when the target was last checked (a success or a failure), for overdue jobs."""
    rows = con.run("""
        SELECT name, greatest(last_ok_at, last_error_at) FROM scrape_targets
        WHERE name IN (SELECT json_array_elements_text(CAST(:names AS json)))
          AND coalesce(last_ok_at, last_error_at) IS NOT NULL
    """, names=json.dumps(names))
    return {name: at for name, at in rows}

# --- adoption (shared/app/adopt.py): the seed article's table, and snapshots of other tools ---

# A row whose seen_at holds no time: nothing says when it was seen.
_NO_TIME = "NOT EXISTS (SELECT 1 FROM unnest(seen_at) ts WHERE ts IS NOT NULL)"
# Rows whose bodies are equal (the seed's hash keeps them apart only if someone edited a body).
_SAME_BODY = """
SELECT array_agg(id ORDER BY id) FROM (SELECT id, count(*) OVER (PARTITION BY sha256(convert_to(body, 'UTF8'))) AS n
                                        FROM scraps) AS s WHERE n > 1
"""
# A row with a time no tool could use: NULL (PostgreSQL's binary search in a segment refuses
# it), infinite, or beyond what a Python datetime holds.
_ODD_TIME = ("EXISTS (SELECT 1 FROM unnest(seen_at) ts WHERE ts IS NULL OR NOT isfinite(ts)"
             " OR ts < '0001-01-02 00:00+00' OR ts > '9999-12-30 00:00+00')")


# The target's row (new, or one without content: a failed check may have made it), and how
# many contents it has.
NEW_TARGET = """
WITH target AS (
    INSERT INTO scrape_targets (name, url) VALUES (:name, :url)
    ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url
    RETURNING id
)
SELECT id, (SELECT count(*) FROM scrape_contents WHERE target_id = target.id) FROM target
"""

# How far ahead of the database's clock a check time may be before it is taken as another
# clock's: such a time is stored as the adoption's (now()), so history stays in order.
CLOCK_SKEW = "5 minutes"
_CLAMPED = f"CASE WHEN ts > now() + interval '{CLOCK_SKEW}' THEN now() ELSE ts END"

# One content per seed row, keeping its id (the view shows it as before), its body and its
# check times' count and span. Returns the rows and check times copied.
IMPORT_SEED_CONTENTS = f"""
WITH copied AS (
    INSERT INTO scrape_contents (id, target_id, hash, body, checks, first_seen, last_seen)
    SELECT id, :target, sha256(convert_to(body, 'UTF8')), body, cardinality(seen_at),
           (SELECT min({_CLAMPED}) FROM unnest(seen_at) ts), (SELECT max({_CLAMPED}) FROM unnest(seen_at) ts)
    FROM {SEED_KEPT}
    RETURNING checks
)
SELECT count(*), coalesce(sum(checks), 0) FROM copied
"""

# Each row's check times, repeats kept, sorted (segments are sorted: the report searches them
# by bisection; the view `scraps` shows them sorted anyway), cut in segments.
IMPORT_SEED_TIMES = f"""
INSERT INTO scrape_seen (content_id, segment, seen_at)
SELECT id, (n - 1) / CAST(:segment_size AS int), array_agg(ts ORDER BY n)
FROM (SELECT id, ts, row_number() OVER (PARTITION BY id ORDER BY ts, k) AS n
      FROM (SELECT s.id, {_CLAMPED} AS ts, u.k
            FROM {SEED_KEPT} s, unnest(s.seen_at) WITH ORDINALITY AS u(ts, k)) AS clamped) AS t
GROUP BY id, (n - 1) / CAST(:segment_size AS int)
"""

# Point an imported target at the content seen last: when it became current (its first check
# after the last check of any other content) and the filters it was made with. Returns the
# target's first and last check times.
POINT_AT_LAST = """
WITH times AS (
    SELECT c.id, ts FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id, unnest(s.seen_at) ts
    WHERE c.target_id = :target AND ts IS NOT NULL
), last AS (
    SELECT id, ts FROM times ORDER BY ts DESC, id DESC LIMIT 1
), others AS (  -- computed once: as a subquery in `since` it ran once per check time
    SELECT coalesce(max(times.ts), '-infinity') AS ts FROM times, last WHERE times.id <> last.id
), since AS (
    SELECT min(times.ts) AS ts FROM times, last, others WHERE times.id = last.id AND times.ts > others.ts
)
UPDATE scrape_targets t SET last_content_id = last.id, last_ok_at = last.ts, last_changed_at = since.ts,
       filters = :filters, etag = NULL, last_modified = NULL
FROM last, since WHERE t.id = :target
RETURNING (SELECT min(ts) FROM times), last.ts
"""


# --- snapshots from another tool ---------------------------------------------------------

# Snapshots as checks: one content per distinct body, its check times in segments (the
# window function reads every input row before the contents are inserted). Returns the
# contents made and the check times recorded.
IMPORT_SNAPSHOTS = """
WITH input AS (
    SELECT sha256(convert_to(body, 'UTF8')) AS hash, body, at
    FROM json_to_recordset(CAST(:snapshots AS json)) AS i(at timestamptz, body text)
), numbered AS (
    SELECT hash, at, row_number() OVER (PARTITION BY hash ORDER BY at) AS k FROM input
), contents AS (
    INSERT INTO scrape_contents (target_id, hash, body, checks, first_seen, last_seen)
    SELECT :target, hash, min(body), count(*), min(at), max(at) FROM input GROUP BY hash
    ORDER BY min(at)  -- ids in the order the versions were first seen, as a run gives them
    RETURNING id, hash, checks
), seen AS (
    INSERT INTO scrape_seen (content_id, segment, seen_at)
    SELECT c.id, (n.k - 1) / CAST(:segment_size AS int), array_agg(n.at ORDER BY n.at)
    FROM numbered n JOIN contents c USING (hash)
    GROUP BY c.id, (n.k - 1) / CAST(:segment_size AS int)
)
SELECT count(*), coalesce(sum(checks), 0) FROM contents
"""


def seed_problems(con) -> tuple[list, list, list]:
    """Ids of the seed's rows adoption refuses: without a check time, with a body another row
    has, with a time no tool could read."""
    empty = con.run(f"SELECT array_agg(id ORDER BY id) FROM scraps WHERE {_NO_TIME}")[0][0]
    same = con.run(_SAME_BODY)[0][0]
    odd = con.run(f"SELECT array_agg(id ORDER BY id) FROM scraps WHERE {_ODD_TIME}")[0][0]
    return empty or [], same or [], odd or []


def seed_kept(con) -> bool:
    return con.run("SELECT to_regclass(:t) IS NOT NULL", t=SEED_KEPT)[0][0]


def seed_times_ahead(con) -> int:
    """Check times of the seed's table dated ahead of the database's clock (another clock's)."""
    return con.run(f"SELECT count(*) FROM scraps, unnest(seen_at) ts WHERE ts > now() + interval '{CLOCK_SKEW}'")[0][0]


def keep_seed(con) -> None:
    """The seed's table renamed aside, where the view `scraps` goes."""
    con.run(f"ALTER TABLE scraps RENAME TO {SEED_KEPT}")


def new_target(con, name: str, url: str) -> tuple[int, int]:
    """(id, contents) of the target's row, made if new."""
    return tuple(con.run(NEW_TARGET, name=name, url=url)[0])


def import_seed(con, target_id: int) -> tuple[int, int]:
    """The kept seed table's rows as the target's contents and check times: (versions, times)."""
    versions, times = con.run(IMPORT_SEED_CONTENTS, target=target_id)[0]
    con.run(IMPORT_SEED_TIMES, target=target_id, segment_size=SEGMENT_SIZE)
    con.run("SELECT setval(pg_get_serial_sequence('scrape_contents', 'id'), max(id)) FROM scrape_contents")
    return versions, times


def import_snapshots(con, target_id: int, rows_json: str) -> tuple[int, int]:
    """Snapshots (a JSON list of {at, body}) as the target's contents: (versions, check times)."""
    return tuple(con.run(IMPORT_SNAPSHOTS, target=target_id, snapshots=rows_json, segment_size=SEGMENT_SIZE)[0])


def point_at_last(con, target_id: int, fingerprint: str) -> tuple:
    """Point an adopted target at its newest content; (first, last) check times."""
    rows = con.run(POINT_AT_LAST, target=target_id, filters=fingerprint)
    return tuple(rows[0]) if rows else (None, None)


# --- the history report (shared/scrape/report.py reads its section through these) ------------

# Per target: its state, its contents' count, checks and first check, and the ids of its
# newest :n + 1 contents by last check (the versions shown, and the one before the oldest).
REPORT_TARGETS = """
SELECT t.id, t.name, t.url, t.last_ok_at, t.last_changed_at, t.error_streak, t.last_error,
       t.last_error_at, count(c.id), coalesce(sum(c.checks), 0), min(c.first_seen),
       trim_array(array_agg(c.id ORDER BY c.last_seen DESC, c.id DESC) FILTER (WHERE c.id IS NOT NULL),
                  CAST(greatest(0, count(c.id) - :n - 1) AS int))
FROM scrape_targets t LEFT JOIN scrape_contents c ON c.target_id = t.id
GROUP BY t.id ORDER BY t.name
"""

# Segments (the sorted check times of one content, 200 a row) that reach into the window: only
# contents seen since :since can have one, and the primary key (content_id, segment) finds them.
REPORT_RECENT = """
recent AS (
    SELECT c.target_id, s.content_id, s.segment, s.seen_at, s.seen_at[1] AS first,
           s.seen_at[cardinality(s.seen_at)] AS last
    FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id
    WHERE c.last_seen >= :since
)"""

# Checks per target and bucket k (of :bucket seconds from :since): in each segment, the times
# before a bucket's end, by binary search (width_bucket counts the sorted elements <= its operand).
REPORT_CHECKS = f"""
WITH {REPORT_RECENT}, counted AS MATERIALIZED (  -- materialized: the arrays stay out of the sort below
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

# Changes per target and bucket (of :bucket seconds from :since): a check is a change when the
# check before it (in time, of any content) saw another content (PIECES, above).
REPORT_CHANGES = PIECES + """
SELECT target_id, floor(extract(epoch FROM first - :since) / :bucket)::int AS k, count(*) FROM (
    SELECT target_id, first, content_id <> lag(content_id) OVER (PARTITION BY target_id ORDER BY first) AS changed
    FROM pieces) p
WHERE changed AND first >= :since GROUP BY target_id, k
"""

# Failed checks per target and bucket; and per target (k NULL), its first in the window.
REPORT_ERRORS = """
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
REPORT_GAPS = f"""
WITH {REPORT_RECENT}, limits AS NOT MATERIALIZED (
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
REPORT_VERSIONS = """
SELECT id, first_seen, last_seen, checks, octet_length(body), left(body, :chars + 1)
FROM scrape_contents WHERE id = ANY(CAST(:ids AS int[]))
"""

# The scrape tables' part of the database's account: rows, check times recorded, and growth
# since :since: each table's size times the share of its contents dated from then (check times
# for scrape_seen, body bytes for scrape_contents, rows for scrape_errors); and when the history
# began. Exact counts: these tables stay small (a row per distinct content, per 200 checks, per
# error). Dead rows (autovacuum's to reclaim) are not growth.
REPORT_TABLES = """
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
)
SELECT (SELECT count(*) FROM scrape_targets), contents.n, (SELECT count(*) FROM scrape_seen), errors.n, contents.checks,
       coalesce(pg_total_relation_size('scrape_seen') * seen.new / nullif(contents.checks, 0), 0)
       + coalesce(pg_total_relation_size('scrape_contents') * contents.new_bytes / nullif(contents.bytes, 0), 0)
       + coalesce(pg_total_relation_size('scrape_errors') * errors.new / nullif(errors.n, 0), 0),
       least(contents.began, errors.began)
FROM contents, seen, errors
"""


def report_targets(con, versions: int) -> list:
    return con.run(REPORT_TARGETS, n=versions)


def report_per_bucket(con, since: datetime, bucket: int) -> tuple[list, list, list]:
    """(target id, bucket, checks), (target id, bucket, changes), and (target id, bucket, errors,
    first error: on each target's total row, whose bucket is None)."""
    return (con.run(REPORT_CHECKS, since=since, bucket=bucket), con.run(REPORT_CHANGES, since=since, bucket=bucket),
            con.run(REPORT_ERRORS, since=since, bucket=bucket))


def report_gaps(con, since: datetime, limits: str, keep: int) -> list:
    return con.run(REPORT_GAPS, since=since, limits=limits, keep=keep)


def report_versions(con, ids: list[int], chars: int) -> dict[int, tuple]:
    """Content id -> (first seen, last seen, checks, bytes, its body's first chars + 1 characters)."""
    return {row[0]: tuple(row[1:]) for row in con.run(REPORT_VERSIONS, ids=ids, chars=chars)} if ids else {}


def report_tables(con, since: datetime) -> tuple:
    """(targets, contents, segments, errors, checks, bytes grown since `since`, history's start)."""
    return tuple(con.run(REPORT_TABLES, since=since)[0])


# --- the history tools (shared/app/history_tools.py: list, show, diff, test, delete) -----------

# Per target: checks, changes, versions, first and last check, error streak, stored bytes
# (bodies, check-time arrays and error messages as stored). Changes are checks whose content
# differs from the check before. When a target's versions follow one another in time (each
# first seen after every earlier one was last seen), that is its versions less one, read from
# scrape_contents alone; only targets whose versions interleave (a page flipping between two
# contents) have their check times read one by one.
HISTORY_LIST = """
WITH c AS (
    SELECT target_id, id, first_seen, last_seen, checks, pg_column_size(body) AS bytes,
           max(last_seen) OVER (PARTITION BY target_id ORDER BY first_seen, id
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
    FROM scrape_contents
), per AS (
    SELECT target_id, count(*) AS versions, sum(checks) AS checks, min(first_seen) AS first,
           sum(bytes) AS bytes, bool_and(before IS NULL OR before < first_seen) AS in_turn
    FROM c GROUP BY target_id
), interleaved AS (
    SELECT target_id, count(*) FILTER (WHERE previous <> content_id) AS changes
    FROM (SELECT c.target_id, c.id AS content_id, lag(c.id) OVER (PARTITION BY c.target_id ORDER BY ts, c.id) AS previous
          FROM per JOIN scrape_contents c USING (target_id) JOIN scrape_seen s ON s.content_id = c.id,
               unnest(s.seen_at) AS ts
          WHERE NOT per.in_turn) AS checks
    GROUP BY target_id
), seen AS (
    SELECT c.target_id, sum(pg_column_size(s.seen_at)) AS bytes
    FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id GROUP BY c.target_id
), errors AS (
    SELECT target_id, min(at) AS first, sum(pg_column_size(error)) AS bytes FROM scrape_errors GROUP BY target_id
)
SELECT t.name, coalesce(per.checks, 0), CASE WHEN per.in_turn THEN per.versions - 1 ELSE interleaved.changes END,
       least(per.first, errors.first), greatest(t.last_ok_at, t.last_error_at), t.error_streak,
       coalesce(per.bytes, 0) + coalesce(seen.bytes, 0) + coalesce(errors.bytes, 0)
FROM scrape_targets t LEFT JOIN per ON per.target_id = t.id LEFT JOIN interleaved ON interleaved.target_id = t.id
     LEFT JOIN seen ON seen.target_id = t.id LEFT JOIN errors ON errors.target_id = t.id
ORDER BY t.name
"""

# A target's versions, oldest first, and its row's facts.
HISTORY_TARGET = """
SELECT id, url, last_content_id, error_streak, last_error, last_error_at FROM scrape_targets WHERE name = :name
"""
HISTORY_VERSIONS = """
SELECT row_number() OVER (ORDER BY first_seen, id), id, first_seen, last_seen, checks, pg_column_size(body),
       length(body), id = :current
FROM scrape_contents WHERE target_id = :target ORDER BY first_seen, id
"""
HISTORY_BODY = "SELECT body FROM scrape_contents WHERE id = :id"

# What deleting a target frees: versions, check times, failed checks, stored bytes.
HISTORY_SIZE = """
SELECT (SELECT count(*) FROM scrape_contents WHERE target_id = :id),
       (SELECT coalesce(sum(checks), 0) FROM scrape_contents WHERE target_id = :id),
       (SELECT count(*) FROM scrape_errors WHERE target_id = :id),
       (SELECT coalesce(sum(pg_column_size(body)), 0) FROM scrape_contents WHERE target_id = :id)
     + (SELECT coalesce(sum(pg_column_size(s.seen_at)), 0)
        FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id WHERE c.target_id = :id)
     + (SELECT coalesce(sum(pg_column_size(error)), 0) FROM scrape_errors WHERE target_id = :id)
"""
# The target's row, locked as a run locks it; its contents, check times and errors go with it.
HISTORY_DELETE = "DELETE FROM scrape_targets WHERE id = (SELECT id FROM scrape_targets WHERE name = :name FOR UPDATE)"


def history_list(con) -> list:
    """(name, checks, changes, first check, last check, error streak, stored bytes) per target."""
    return [tuple(row) for row in con.run(HISTORY_LIST)]


def history_target(con, name: str) -> tuple | None:
    """(id, url, current content id, error streak, last error, its time) of target `name`."""
    rows = con.run(HISTORY_TARGET, name=name)
    return tuple(rows[0]) if rows else None


def history_versions(con, target_id: int, current: int | None) -> list:
    """(number, content id, first seen, last seen, checks, stored bytes, characters, current?) per
    version of a target, oldest first."""
    return con.run(HISTORY_VERSIONS, target=target_id, current=current)


def history_body(con, content_id: int) -> str:
    return con.run(HISTORY_BODY, id=content_id)[0][0]


def history_body_and_filters(con, content_id: int) -> tuple[str, str | None]:
    """A version's body and the filters' fingerprint its target was last checked with."""
    return tuple(con.run("SELECT c.body, t.filters FROM scrape_contents c JOIN scrape_targets t ON t.id = c.target_id"
                         " WHERE c.id = :id", id=content_id)[0])


def target_names(con, limit: int | None = None) -> list[str]:
    return [row[0] for row in con.run("SELECT name FROM scrape_targets ORDER BY name LIMIT :n", n=limit)]


def target_id(con, name: str) -> int | None:
    rows = con.run("SELECT id FROM scrape_targets WHERE name = :name", name=name)
    return rows[0][0] if rows else None


def history_size(con, name: str) -> tuple[list[str], int] | None:
    """What target `name`'s history holds: its versions, check times and failed checks in words,
    and its stored bytes (None: no such target)."""
    found = target_id(con, name)
    if found is None:
        return None
    versions, times, errors, size = con.run(HISTORY_SIZE, id=found)[0]
    return [plural(versions, "version"), plural(times, "check time"), plural(errors, "failed check")], size


def delete_target(con, name: str) -> None:
    con.run(HISTORY_DELETE, name=name)
