"""Looking at the history: `python -m functions.history list | show | diff | test | delete | prune`.

A target's versions are its distinct contents, numbered from 1 in the order they were first
seen (after a prune, from the oldest kept). The SQL is in each kind's store.py (HISTORY_*, and
prune, which a run calls too), all of it read-only but the deletes and prune.
"""

import os
import time
from dataclasses import dataclass
from datetime import datetime

from shared.app import config, schema
from shared.core import db, log
from shared.core.db import transaction
from shared.core.errors import ConfigError, WorkFailed
from shared.core.text import one_line, plural
from shared.notify import diff
from shared.scrape import content, fetch, filters, request, store
from shared.scrape.job import ScrapeJob

CONTEXT_LINES = 3  # diff context, as diff -u


def scrape_job(name: str) -> ScrapeJob:
    """The [[scrape]] job `name` of the jobs file, built (its ${VAR}s read); ConfigError if there
    is none, naming the jobs there."""
    from shared.app.kinds import KINDS

    entries, source = config.kind_entries(KINDS["scrape"])
    if not entries:
        raise ConfigError(f"{source}: no [[scrape]] job (looking for {name!r})")
    return config.build(config.select(entries, [name], "scrape", source)[0])


def run(command: str, options: dict) -> int:
    """One subcommand, printed to stdout; its exit code. Bad input raises ConfigError (exit 2)."""
    if command == "test":
        text, code = test(scrape_job(options["name"]))
        print(log.redact(text), end="")
        return code
    if command == "prune" and not 1 <= options["keep_days"] <= store.MAX_KEEP_DAYS:
        raise ConfigError(f"--keep-days must be from 1 to {store.MAX_KEEP_DAYS}, not {options['keep_days']}")
    with db.connection() as con:
        schema.ensure(con)
        if command == "list":
            text = list_text(con)
        elif command == "show":
            text = show_text(con, options["name"], options.get("version"))
        elif command == "diff":
            text = diff_text(con, options["name"], options.get("a"), options.get("b"))
        elif command == "delete":
            text = delete(con, options["name"], options["yes"], options.get("kind"))
        elif command == "prune":
            text = prune(con, options["keep_days"], options.get("job"))
        else:
            raise ConfigError(f"unknown command {command!r}")
    print(log.redact(text), end="")
    return 0


# --- list ---------------------------------------------------------------------------------

def list_text(con) -> str:
    """Every job's history, kind by kind: runs (a scrape's checks), changes, first and last run,
    failure streak, stored size."""
    from shared.app.kinds import KINDS

    rows = [("kind", "name", "checks", "changes", "first check (UTC)", "last check (UTC)", "failing", "stored")]
    total = 0
    for kind in KINDS.values():
        for name, runs, changes, first, last, streak, size in kind.history.rows(con) if kind.history else []:
            rows.append((kind.name, name, f"{runs:,}", "-" if changes is None else f"{changes:,}", _minute(first),
                         _minute(last), f"{streak:,}", _size(size)))
            total += size
    if len(rows) == 1:
        return "no history yet\n"
    return _table(rows, right={2, 3, 6, 7}) + f"{plural(len(rows) - 1, 'job')}, {_size(total)} stored\n"


# --- show, diff ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Version:
    number: int
    content_id: int
    first: datetime
    last: datetime
    checks: int
    bytes: int  # stored (compressed when large)
    chars: int
    current: bool

    def span(self) -> str:
        return f"first seen {_second(self.first)}, last seen {_second(self.last)} UTC, {plural(self.checks, 'check')}"


def _target(con, name: str) -> tuple[tuple, list[Version]]:
    target = store.history_target(con, name)
    if target is None:
        known = store.target_names(con, limit=11)
        listed = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise ConfigError(f"no target named {name!r} in the history (known: {listed or 'none'})")
    return target, [Version(*row) for row in store.history_versions(con, target[0], target[2])]


def show_text(con, name: str, number: int | None = None) -> str:
    """The versions, newest first; with `number`, that version's body as stored."""
    (_, url, _, streak, error, error_at), versions = _target(con, name)
    if number is not None:
        version = _pick(name, versions, number)
        return store.history_body(con, version.content_id) + "\n"
    lines = [f"{name}: {one_line(url)}"]
    if versions:
        checks = sum(v.checks for v in versions)
        lines.append(f"{plural(len(versions), 'version')}, {plural(checks, 'check')}, from {_second(versions[0].first)}"
                     f" to {_second(max(v.last for v in versions))} UTC")
    else:
        lines.append("no version stored")
    if streak:
        lines.append(f"failing: {plural(streak, 'failed check')} in a row, the last at {_second(error_at)} UTC: {one_line(error)}")
    rows = [("version", "first seen (UTC)", "last seen (UTC)", "checks", "size", "")]
    for v in reversed(versions):
        rows.append((str(v.number), _second(v.first), _second(v.last), f"{v.checks:,}", _size(v.bytes),
                     "current" if v.current else ""))
    return "\n".join(lines) + "\n" + (_table(rows, right={0, 3, 4}) if versions else "")


def diff_text(con, name: str, a: int | None = None, b: int | None = None) -> str:
    """The unified diff from version `a` to version `b`; by default from the version before the
    current one to the current one (the last change), or from `a` to the current one."""
    _, versions = _target(con, name)
    if len(versions) < 2:
        raise ConfigError(f"{name} has {plural(len(versions), 'version')}: nothing to diff")
    current = next((v for v in versions if v.current), versions[-1])
    if a is None:
        before = max((v for v in versions if v is not current), key=lambda v: (v.last, v.number))
        after = current
    else:
        before = _pick(name, versions, a)
        after = _pick(name, versions, b) if b is not None else current
    if before is after:
        raise ConfigError(f"version {before.number} compared with itself: give two versions")
    old, new = (store.history_body(con, v.content_id) for v in (before, after))
    header = [f"--- {name} version {before.number} ({before.span()})",
              f"+++ {name} version {after.number} ({after.span()})"]
    return "\n".join(header + diff.hunks(old, new, CONTEXT_LINES)) + "\n"


def _pick(name: str, versions: list[Version], number: int) -> Version:
    if not versions:
        raise ConfigError(f"{name} has no version stored")
    if not 1 <= number <= len(versions):
        raise ConfigError(f"{name} has versions 1 to {len(versions)}, not {number}")
    return versions[number - 1]


# --- test ---------------------------------------------------------------------------------

def test(job: ScrapeJob) -> tuple[str, int]:
    """Fetch the page now and apply the job's filters, as a run does (filters in a worker it can
    stop, within the job's timeout); what would be stored and its diff against the current
    version. Stores nothing, notifies nobody. Without $DATABASE_URL there is nothing to diff."""
    from shared.scrape.sandbox import Sandbox  # worker processes: only this command needs them

    started = time.monotonic()
    http = fetch.new_pool(hosts=1, per_host=1)
    try:
        method, headers, data = request.prepared(job)
        page = fetch.fetch(http, job.url, total_timeout=job.timeout, headers=headers, method=method, body=data,
                           connect_timeout=min(fetch.CONNECT_TIMEOUT, job.timeout))
        with Sandbox(size=1) as sandbox:
            text = content.normalized(page.text, page.content_type, job.json) if page.pdf is None else ""
            body = sandbox.apply(job, text, seconds=job.timeout - (time.monotonic() - started), pdf=page.pdf)
    except (fetch.FetchError, filters.FilterError, content.ContentError) as exc:
        raise WorkFailed(f"{job.name}: {job.url}: {exc}") from None
    finally:
        http.clear()
    body = db.storable(log.redact(body))
    chosen = filters.settings(job)
    how = ("filters: " + ", ".join(k for k in ("drop", "select", "ignore") if k in chosen)
           + (", HTML -> text" if chosen["text"] else ", HTML kept") if chosen else "no filters: the page as fetched")
    lines = [f"{job.name}: {job.url}: {len(body):,} characters would be stored ({how})", "", body, ""]
    if not os.environ.get("DATABASE_URL"):
        return "\n".join(lines + ["(no DATABASE_URL: nothing to compare with)"]) + "\n", 0
    with db.connection() as con:
        schema.ensure(con)
        target = store.history_target(con, job.name)
        versions = [Version(*r) for r in store.history_versions(con, target[0], target[2])] if target else []
        current = next((v for v in versions if v.current), None)
        if current is None:
            return "\n".join(lines + [f"{job.name} has no stored version: the check would be new"]) + "\n", 0
        stored, fingerprint = store.history_body_and_filters(con, current.content_id)
    if stored == body:
        return "\n".join(lines + [f"unchanged: the same as version {current.number}, the current one"]) + "\n", 0
    note = "" if fingerprint == filters.fingerprint(job) else \
        " (the current version was made with other filters: the change would not be notified)"
    changes = [f"--- {job.name} version {current.number} (current; {current.span()})",
               f"+++ {job.name} now"] + diff.hunks(stored, body, CONTEXT_LINES)
    return "\n".join(lines + [f"changed against version {current.number}{note}:"] + changes) + "\n", 0


# --- delete, prune --------------------------------------------------------------------------

def delete(con, name: str, yes: bool, kind: str | None = None) -> str:
    """Delete job `name`'s whole history (of `kind`, when more than one kind has that name), in
    one transaction."""
    from shared.app.kinds import KINDS

    with transaction(con):
        found = {k.name: (k, size) for k in KINDS.values() if k.history and kind in (None, k.name)
                 for size in [k.history.size(con, name)] if size is not None}
        if len(found) > 1:
            raise ConfigError(f"{name} is a job of {' and of '.join(found)}: say which with --kind "
                              + " or --kind ".join(found))
        if not found:
            raise ConfigError(f"no {kind + ' job' if kind else 'job'} named {name!r} in the history")
        ((which, (owner, (counts, size))),) = found.items()
        what = ", ".join([*counts, _size(size)])
        if not yes:
            raise ConfigError(f"delete {name} drops the {which} job's whole history ({what}): add --yes")
        owner.history.delete(con, name)
    return (f"deleted the {which} job {name}: {what}; a job of that name in the jobs file starts a new history"
            " at its next run\n")


def prune(con, days: int, names: list[str] | None = None) -> str:
    """store.prune with the same number of days for the named targets (default: all), exactly."""
    known = store.target_names(con)
    if names:
        missing = [n for n in dict.fromkeys(names) if n not in known]
        if missing:
            raise ConfigError(f"no target named {', '.join(map(repr, missing))} in the history")
    chosen = list(dict.fromkeys(names)) if names else known
    pruned = store.prune(con, [(name, days) for name in chosen], slack_days=0)
    return (f"pruned {pruned.targets} of {plural(len(chosen), 'target')} to their last {plural(days, 'day')}:"
            f" {plural(pruned.versions, 'version')}, {plural(pruned.check_times, 'check time')} and"
            f" {plural(pruned.errors, 'failed check')} dropped; {plural(pruned.rows, 'row')} and {_size(pruned.bytes)}"
            " freed\n")


# --- formatting ---------------------------------------------------------------------------

def _minute(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d %H:%M}" if when else "-"


def _second(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S}" if when else "-"


def _size(size: int) -> str:
    size = int(size)
    for unit, scale in (("GB", 10 ** 9), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _table(rows: list[tuple], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             .rstrip() for row in rows]
    return "\n".join(lines) + "\n"

