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
from shared.scrape.store import CLOCK_SKEW, SEED_KEPT

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
    kept = store.seed_kept(con)
    if shape is None or not shape.is_seed:
        if kept and shape is not None and shape.kind == "view":
            return Adopted(job.name, already=True)
        what = "nothing is called scraps" if shape is None else f"scraps is a {shape.kind}, not the seed's table"
        raise ConfigError(f"--adopt-seed: nothing to adopt: {what} (the seed's table has columns id, hash, body,"
                          " seen_at)")
    if kept:
        raise DatabaseRefused(f"--adopt-seed: the table {SEED_KEPT} exists already, where the seed's table would be"
                              " kept: rename it first")
    empty, same, odd = store.seed_problems(con)
    if empty:
        raise DatabaseRefused(f"--adopt-seed: scraps rows {', '.join(map(str, empty[:10]))} have no check time"
                              " (seen_at is empty): give them one or delete them, then adopt")
    if same:  # the seed keeps one row per content (its hash is unique); ours too
        raise DatabaseRefused(f"--adopt-seed: scraps rows {', '.join(map(str, same[:10]))} hold the same body: merge"
                              " their check times into one of them and delete the others, then adopt")
    if odd:  # the report, history and prune would trip over them later, so refuse them now
        raise DatabaseRefused(f"--adopt-seed: scraps rows {', '.join(map(str, odd[:10]))} have check times that are"
                              " not moments of a calendar (NULL, infinity, or outside the years 1 to 9999): fix or"
                              " delete them (e.g. UPDATE scraps SET seen_at = array_remove(seen_at, NULL)), then adopt")
    ahead = store.seed_times_ahead(con)
    store.keep_seed(con)
    schema.migrate_within(con)
    target_id = _new_target(con, job)
    versions, times = store.import_seed(con, target_id)
    first, last = store.point_at_last(con, target_id, filters.fingerprint(_unfiltered(job)))
    return Adopted(job.name, versions, times, first, last, ahead=ahead)


def _unfiltered(job):
    """The job without filters: what the seed stored was the page as fetched."""
    return replace(job, select=(), drop=(), ignore=(), text=None)


def _new_target(con, job) -> int:
    """The target's row, created; a target that has content already is refused."""
    url = storable(log.redact(job.url))
    target_id, contents = store.new_target(con, job.name, url)
    if contents:
        raise ConfigError(f"target {job.name!r} has history already: adopt into a job without one")
    return target_id


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
    target_id, contents = store.new_target(con, name, storable(log.redact(url)))
    if contents:
        return Imported(name, skipped="the target has history here already (imported before?)")
    rows = json.dumps([{"at": at.isoformat(), "body": storable(log.redact(body))} for at, body in snapshots],
                      ensure_ascii=False)
    versions, count = store.import_snapshots(con, target_id, rows)
    first, last = store.point_at_last(con, target_id, IMPORTED_FILTERS)
    return Imported(name, count, versions, first, last)
