"""Adopting history kept elsewhere: the seed article's `scraps` table, and urlwatch's snapshots.

Both end the same way: a target whose contents, check times and current content are what the
other tool saw, so the next check is `unchanged` or `changed` against the content it saw last.
Each adoption is one transaction, and running it again does nothing.

- The seed's table (`python -m functions.migrate --adopt-seed NAME`): renamed aside to
  store.SEED_KEPT (never dropped, never changed), our schema created in its place, and every
  row and check time copied into target NAME, keeping the rows' ids, so the seed's own queries
  (its breakdown query, `SELECT id, body FROM scraps`) print what they printed before. Only
  `hash` differs: ours is sha256, the seed's sha1 (its values stay in the kept table).
- Snapshots from another tool (shared/scrape/urlwatch.py reads urlwatch's): imported into
  targets that have no content yet; a target with history is left alone.

The body another tool stored was made by its filters, not ours: the target remembers filters
that are not the job's, so the first check's different body counts as an edit of the filters,
recorded but not notified (like any edit of a job's filters).
"""

import json
from dataclasses import dataclass, replace
from datetime import datetime

from shared.app import schema
from shared.core import log
from shared.core.db import DatabaseRefused, DatabaseUnavailable, classify, sqlstate, storable, transaction
from shared.core.errors import ConfigError
from shared.core.text import plural
from shared.scrape import filters, store
from shared.scrape.store import SEED_KEPT, SEGMENT_SIZE

IMPORTED_FILTERS = "imported"  # a target's filter fingerprint after an import: never a job's


@dataclass(frozen=True)
class Adopted:
    target: str
    versions: int = 0
    check_times: int = 0
    first: datetime | None = None
    last: datetime | None = None
    already: bool = False  # nothing was done: adopted before
    ahead: int = 0  # check times dated ahead of the database's clock, taken as seen at adoption

    def line(self) -> str:
        if self.already:
            return (f"nothing to adopt: the seed's table was adopted before (kept as {SEED_KEPT}); "
                    f"scraps is this project's view")
        span = f" from {self.first:%Y-%m-%d %H:%M} to {self.last:%Y-%m-%d %H:%M} UTC" if self.first else ""
        return (f"adopted the seed's table into target {self.target!r}: {plural(self.versions, 'version')},"
                f" {plural(self.check_times, 'check time')}{span}; the table is kept as {SEED_KEPT};"
                f" schema at version {len(schema.MIGRATIONS)}."
                + (f" {plural(self.ahead, 'check time')} dated more than {CLOCK_SKEW} ahead of the database's clock"
                   " (another clock?): taken as seen now." if self.ahead else "")
                + " Remove the article's own Scheduler job"
                " (its INSERT into scraps now fails on the view): this project's scrape job replaces it")


def adopt_seed(con, job) -> Adopted:
    """Adopt the seed's `scraps` table into the [[scrape]] job `job`'s target, in one
    transaction. Adopted(already=True) when it was adopted before."""
    try:
        with transaction(con):
            return _adopt_seed(con, job)
    except (ConfigError, DatabaseRefused):
        raise
    except Exception as exc:
        raise _failed(exc, "adopting the seed's table") from None


def _adopt_seed(con, job) -> Adopted:
    schema.lock(con)  # no migration, run or other adoption meanwhile creates the schema
    shape = store.scraps_shape(con)
    kept = con.run("SELECT to_regclass(:t) IS NOT NULL", t=SEED_KEPT)[0][0]
    if shape is None or not shape.is_seed:
        if kept and shape is not None and shape.kind == "view":
            return Adopted(job.name, already=True)
        what = "nothing is called scraps" if shape is None else f"scraps is a {shape.kind}, not the seed's table"
        raise ConfigError(f"--adopt-seed: nothing to adopt: {what} (the seed's table has columns id, hash, body,"
                          " seen_at)")
    if kept:
        raise DatabaseRefused(f"--adopt-seed: the table {SEED_KEPT} exists already, where the seed's table would be"
                              " kept: rename it first")
    empty = con.run(f"SELECT array_agg(id ORDER BY id) FROM scraps WHERE {_NO_TIME}")[0][0]
    if empty:
        raise DatabaseRefused(f"--adopt-seed: scraps rows {', '.join(map(str, empty[:10]))} have no check time"
                              " (seen_at is empty): give them one or delete them, then adopt")
    same = con.run(_SAME_BODY)[0][0]
    if same:  # the seed keeps one row per content (its hash is unique); ours too
        raise DatabaseRefused(f"--adopt-seed: scraps rows {', '.join(map(str, same[:10]))} hold the same body: merge"
                              " their check times into one of them and delete the others, then adopt")
    odd = con.run(f"SELECT array_agg(id ORDER BY id) FROM scraps WHERE {_ODD_TIME}")[0][0]
    if odd:  # the report, history and prune would trip over them later, so refuse them now
        raise DatabaseRefused(f"--adopt-seed: scraps rows {', '.join(map(str, odd[:10]))} have check times that are"
                              " not moments of a calendar (NULL, infinity, or outside the years 1 to 9999): fix or"
                              " delete them (e.g. UPDATE scraps SET seen_at = array_remove(seen_at, NULL)), then adopt")
    ahead = con.run(f"SELECT count(*) FROM scraps, unnest(seen_at) ts WHERE ts > now() + interval '{CLOCK_SKEW}'")[0][0]
    con.run(f"ALTER TABLE scraps RENAME TO {SEED_KEPT}")
    schema.migrate_within(con)
    target_id = _new_target(con, job)
    versions, times = con.run(IMPORT_SEED_CONTENTS, target=target_id)[0]
    con.run(IMPORT_SEED_TIMES, target=target_id, segment_size=SEGMENT_SIZE)
    con.run("SELECT setval(pg_get_serial_sequence('scrape_contents', 'id'), max(id)) FROM scrape_contents")
    first, last = _point_at_last(con, target_id, filters.fingerprint(_unfiltered(job)))
    return Adopted(job.name, versions, times, first, last, ahead=ahead)


def _unfiltered(job):
    """The job without filters: what the seed stored was the page as fetched."""
    return replace(job, select=(), drop=(), ignore=(), text=None)


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


def _new_target(con, job) -> int:
    """The target's row, created; a target that has content already is refused."""
    url = storable(log.redact(job.url))
    target_id, contents = con.run(NEW_TARGET, name=job.name, url=url)[0]
    if contents:
        raise ConfigError(f"target {job.name!r} has history already: adopt into a job without one")
    return target_id


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

@dataclass(frozen=True)
class Imported:
    target: str
    snapshots: int = 0
    versions: int = 0
    first: datetime | None = None
    last: datetime | None = None
    skipped: str | None = None  # why nothing was imported

    def line(self) -> str:
        if self.skipped:
            return f"{self.target}: history not imported: {self.skipped}"
        if not self.snapshots:
            return f"{self.target}: no snapshot to import"
        return (f"{self.target}: imported {plural(self.snapshots, 'snapshot')} ({plural(self.versions, 'version')}) from"
                f" {self.first:%Y-%m-%d %H:%M} to {self.last:%Y-%m-%d %H:%M} UTC")


def import_snapshots(con, histories: list[tuple[str, str, list[tuple[datetime, str]]]]) -> list[Imported]:
    """Import [(target name, url, [(time, body)])] in one transaction: each snapshot is a check
    at its time. A target that has content already is skipped (so importing twice is harmless)."""
    try:
        with transaction(con):
            schema.migrate_within(con)  # creates the schema when there is none yet
            return [_import(con, name, url, snapshots) for name, url, snapshots in histories]
    except (ConfigError, DatabaseRefused):
        raise
    except Exception as exc:
        raise _failed(exc, "importing the history") from None


def _failed(exc: Exception, doing: str) -> Exception:
    """An error the database answered (a table of ours in the way, say) as one line, exit 2: the
    transaction rolled back, so nothing changed. Unreachable: exit 1. Anything else is a bug."""
    problem = classify(exc, doing)
    code = sqlstate(exc)
    if code and not isinstance(problem, (DatabaseRefused, DatabaseUnavailable)):  # classify's failed work
        return DatabaseRefused(log.redact(f"{doing}: {exc.args[0].get('M', exc)} (SQLSTATE {code}): nothing was changed"))
    return problem


def _import(con, name: str, url: str, snapshots: list[tuple[datetime, str]]) -> Imported:
    if not snapshots:
        return Imported(name)
    target_id, contents = con.run(NEW_TARGET, name=name, url=storable(log.redact(url)))[0]
    if contents:
        return Imported(name, skipped="the target has history here already (imported before?)")
    rows = json.dumps([{"at": at.isoformat(), "body": storable(log.redact(body))} for at, body in snapshots],
                      ensure_ascii=False)
    versions, count = con.run(IMPORT_SNAPSHOTS, target=target_id, snapshots=rows, segment_size=SEGMENT_SIZE)[0]
    first, last = _point_at_last(con, target_id, IMPORTED_FILTERS)
    return Imported(name, count, versions, first, last)


def _point_at_last(con, target_id: int, fingerprint: str) -> tuple[datetime | None, datetime | None]:
    rows = con.run(POINT_AT_LAST, target=target_id, filters=fingerprint)
    return tuple(rows[0]) if rows else (None, None)


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
