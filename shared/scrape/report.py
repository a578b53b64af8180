"""The scrape kind's section of the history report: per watched page, checks, changes, failed
checks and missed runs per day (the seed article's breakdown, per target) and per bucket of the
timeline, last check, last change, the error streak, gaps in the schedule and the newest
versions with their diffs.

PostgreSQL does the counting (the SQL is in store.py): a year of 10-minute checks is 52,560
check times per target, and the report never brings them into Python. Check times are stored
in sorted segments of 200, so most of the work is per segment: checks per bucket by binary
search in a segment (width_bucket), changes where the content differs from the segment before,
gaps from the pauses inside segments. Only segments that overlap another content's (a page
flipping back and forth between versions) are taken apart check by check.

Changes are counted as the checks whose content differs from the check before, not as the
seed's `count(DISTINCT body) - 1` per day, which misses a change at midnight and counts a page
that flips back and forth once.
"""

from dataclasses import dataclass, field
from functools import cached_property
from datetime import date, datetime, timedelta

from shared.core import report
from shared.core.report import Chart, Column, Gap, Row, Section, Tables, Timeline, VersionView, View, Window
from shared.core.text import one_line, plural, size, when
from shared.notify import diff
from shared.scrape import store

VERSIONS = 4  # the newest versions shown per target, each with its diff against the one before
VERSION_CHARS = 32_000  # a version's body is compared on its first characters only
DIFF_LINES, DIFF_LINE_CHARS = 40, 200  # a diff is cut to its first lines, each line to its first characters

CHART = Chart(stack=(("checks", "#bdbdbd", "checks"), ("errors", "#d50000", "errors")),
              ticks=(("changes", "#1565c0", "changes"),),
              tooltip=(("checks", "checks"), ("changes", "changes"), ("failed", "errors"), ("missed", None)))
COLUMNS = [Column("checks", 6), Column("changes", 7), Column("errors", 6), Column("missed", 6)]


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

    def row(self) -> Row:
        return Row(self.day, [str(self.checks), str(self.changes), str(self.errors),
                              "" if self.missed is None else str(self.missed)], self.missed, self.length)


@dataclass
class KeptVersion:
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
    versions: list[KeptVersion] = field(default_factory=list)  # newest first

    # Read once its days are set (section() sets them before anyone reads these).
    @cached_property
    def missed(self) -> int:
        return sum(d.missed or 0 for d in self.days)

    @cached_property
    def totals(self) -> tuple[int, int, int]:
        """Checks, changes and failed checks over the window."""
        return (sum(d.checks for d in self.days), sum(d.changes for d in self.days), sum(d.errors for d in self.days))

    def view(self, window: Window) -> View:
        facts = [f"last check {when(self.last_check)}, last change {when(self.last_change)}, "
                 f"error streak {self.error_streak}"]
        if self.last_error:
            facts.append(f"last error {when(self.last_error_at)}: {one_line(self.last_error)}")
        facts.append(f"{plural(self.checks_total, 'check')} in all, {plural(self.contents, 'distinct content')}")
        totals, missed = self.totals, self.missed
        return View(
            kind="scrape", css="target", name=self.name, subtitle=self.url, link=self.url, every=self.every,
            error_streak=self.error_streak, last_error=self.last_error, failed_word="failed check",
            quiet="last check succeeded", quiet_ok=True, facts=facts,
            meta=[f"last check {when(self.last_check)}", f"last change {when(self.last_change)}"],
            timeline=self.timeline, chart=CHART, interval=self.interval, columns=COLUMNS,
            days=lambda: [d.row() for d in self.days],
            total=[*map(str, totals), str(missed) if self.interval else ""],
            periods=lambda: [d.row() for d in periods(self.days, window.since, window.period_days)],
            day_count=len(self.days),
            days_words=f"{plural(totals[0], 'check')}, {plural(totals[1], 'change')}, {totals[2]} failed,"
                       f" {missed} missed",
            missed=missed, gaps=self.gaps, earlier_gaps=self.earlier_gaps,
            versions=[_version_view(v, i, len(self.versions) == self.contents) for i, v in enumerate(self.versions)],
            versions_total=self.contents)


def _version_view(v: KeptVersion, i: int, all_kept: bool) -> VersionView:
    head = (f"{'current, ' if i == 0 else ''}seen {when(v.first_seen)} to {when(v.last_seen)}, "
            f"{plural(v.checks, 'check')}, {size(v.size)}")
    note = f" (on the first {VERSION_CHARS:,} characters)" if v.truncated else ""
    return VersionView(head, v.diff, v.diff_cut, note, oldest=v.diff is None and all_kept)


def section(con, window: Window) -> Section:
    """The scrape kind's section of the report (shared.core.report)."""
    rows = store.report_targets(con, VERSIONS)
    timelines = {row[0]: window.timeline(("checks", "changes", "errors")) for row in rows}
    checks, changes, errors = store.report_per_bucket(con, window.since, window.bucket)
    for target_id, k, n in checks:
        timelines[target_id].put("checks", k, n)
    for target_id, k, n in changes:
        timelines[target_id].put("changes", k, n)
    first_error: dict[int, datetime] = {}
    for target_id, k, n, first in errors:
        if k is None:
            first_error[target_id] = first
        else:
            timelines[target_id].put("errors", k, n)
    gaps: dict[int, tuple[list, int]] = {}
    for target_id, before, start, count in store.report_gaps(con, window.since, window.gap_limits(), report.SHOWN_GAPS):
        gaps.setdefault(target_id, ([], count))[0].append((before, start))
    versions = _versions(con, {row[0]: row[11] for row in rows if row[11]})
    targets = []
    for row in rows:
        target_id, name, url, last_ok, last_change, streak, last_error, last_error_at, contents, total, first = row[:11]
        target = Target(name, url, window.every(name), window.interval(name), last_ok, last_change, streak, last_error,
                        last_error_at, contents, int(total), first, timelines[target_id],
                        versions=versions.get(target_id, []))
        first_run = min([t for t in (first, first_error.get(target_id)) if t], default=None)
        report.schedule(target.timeline, first_run, target.interval, window.now)
        target.days = _days(target.timeline, report.expected_per_day(first_run, target.interval, window.since,
                                                                     window.now))
        pairs, count = gaps.get(target_id, ([], 0))
        last_run = max([t for t in (last_ok, last_error_at) if t], default=None)
        target.gaps, target.earlier_gaps = report.gaps(pairs, count, last_run, target.interval, window.now)
        targets.append(target)
    return Section(targets, lambda target: target.view(window), _tables(con, window))


def _tables(con, window: Window) -> Tables:
    n_targets, n_contents, n_seen, n_errors, n_checks, grown, began = store.report_tables(con, window.growth_since)
    return Tables({"scrape_targets": n_targets, "scrape_contents": n_contents, "scrape_seen": n_seen,
                   "scrape_errors": n_errors}, float(grown), began, [f"{plural(int(n_checks), 'check')} recorded"])


def _versions(con, newest: dict[int, list[int]]) -> dict[int, list[KeptVersion]]:
    """The newest VERSIONS versions of each target (`newest`: target id -> content ids, newest
    first, one more than shown), each with its diff against the one before."""
    found = store.report_versions(con, [i for ids in newest.values() for i in ids], VERSION_CHARS)
    versions = {}
    for target_id, ids in newest.items():
        rows = [found[i] for i in ids]
        shown = []
        for i, (first, last, checks, size_, body) in enumerate(rows[:VERSIONS]):
            version = KeptVersion(first, last, checks, size_, truncated=len(body) > VERSION_CHARS)
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
