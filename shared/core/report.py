"""What a kind's section of the history report is made of.

Each kind reads its own section (its `Kind.report`: (connection, Window) -> Section), from its
own tables, with the SQL in its store.py; shared/app/report/ assembles the sections and renders
them, every kind's alike, from the `View` each of its items gives: a header and a few lines of
facts, a timeline drawn as the `Chart` says, a table of days, the gaps in its schedule and, for
a kind that keeps versions, the newest ones with their diffs. The schedule arithmetic every kind
shares (runs expected per bucket and per day, gaps) is here too.
"""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from shared.core.schedule import EVERY

GAP_FACTOR = 1.5  # a pause longer than 1.5 intervals between runs is a gap
SHOWN_GAPS = 20  # the newest gaps listed per job; the others are only counted


@dataclass(frozen=True)
class Window:
    """What the report covers, for one kind: [since, now], counted in buckets of `bucket`
    seconds; HTML tables in rows of `period_days`; `schedules`: job name -> its `every`
    ("10m", "1h", "1d"; None for cron) for the jobs of the jobs file."""
    now: datetime
    since: datetime
    bucket: int
    period_days: int
    schedules: Mapping[str, str | None] = field(default_factory=dict)
    growth_since: datetime | None = None  # growth is measured from here (the last days of history)

    def every(self, name: str) -> str | None:
        return self.schedules.get(name)

    def interval(self, name: str) -> int | None:
        return EVERY.get(self.schedules.get(name))

    def gap_limits(self) -> str:
        """The gap limit (seconds) of each job with an `every`, as JSON for a query."""
        return json.dumps({name: EVERY[every] * GAP_FACTOR for name, every in self.schedules.items() if every in EVERY})

    def timeline(self, names: tuple[str, ...]) -> "Timeline":
        size = int((self.now - self.since).total_seconds() // self.bucket) + 1  # up to the bucket of `now`
        return Timeline(self.since, self.bucket, {name: [0] * size for name in names})


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

    def put(self, name: str, k: int, n: int) -> None:
        """Set bucket k of a series (one after the window's end, in a report of the past, is not shown)."""
        if k < len(self.series[name]):
            self.series[name][k] = int(n)


def schedule(timeline: Timeline, first: datetime | None, interval: int | None, now: datetime) -> None:
    """The runs the schedule asked for in each bucket (none before the first run)."""
    if not interval or not first:
        return
    size = len(next(iter(timeline.series.values())))
    last_due = now - timedelta(seconds=interval)
    timeline.expected = [
        slots(max(first, timeline.bucket(k)), min(timeline.bucket(k + 1), last_due), interval) for k in range(size)]


def expected_per_day(first: datetime | None, interval: int | None, since: datetime, now: datetime) -> dict[date, int]:
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
        expected[day] = slots(start, end, interval)
        day += timedelta(days=1)
    return expected


def slots(start: datetime, end: datetime, interval: int) -> int:
    """How many times k * interval (seconds since the epoch) fall in [start, end)."""
    first, last = -(-start.timestamp() // interval), -(-end.timestamp() // interval)
    return max(0, int(last - first))


def gaps(pairs: list[tuple[datetime, datetime]], count: int, last_run: datetime | None, interval: int | None,
         now: datetime) -> tuple[list[Gap], int]:
    """The gaps between runs a query found (the newest of `count`), then the open one when no
    run came for more than GAP_FACTOR intervals since `last_run`; and how many were left out."""
    if not interval:
        return [], 0
    found = [Gap(a, b, round((b - a).total_seconds() / interval) - 1) for a, b in pairs]
    if last_run and now - last_run > timedelta(seconds=interval * GAP_FACTOR):
        found.append(Gap(last_run, now, int((now - last_run).total_seconds() // interval), open=True))
    return found, count - len(pairs)


# --- what the renderer shows of each item ---------------------------------------------------

@dataclass(frozen=True)
class Column:
    title: str
    width: int  # characters, in the text report


@dataclass
class Row:
    """A row of an item's table: a day (or, in the HTML of a long window, `length` days)."""
    day: date
    cells: list[str]
    missed: int | None = None  # runs missed in it (None: schedule unknown)
    length: int = 1


@dataclass(frozen=True)
class Chart:
    """How a timeline is drawn: `stack` (css class, colour, series) as bars from the bottom, the
    first lowest, each a share of the runs the schedule asked for; `ticks` (class, colour,
    series) as marks along the top; `tooltip` (label, series, or None for the missed runs)."""
    stack: tuple[tuple[str, str, str], ...]
    tooltip: tuple[tuple[str, str | None], ...]
    ticks: tuple[tuple[str, str, str], ...] = ()


@dataclass
class VersionView:
    """One kept version, as the report shows it: a line about it and its diff against the one
    before (None: the oldest; []: no difference in what was compared)."""
    head: str
    diff: list[str] | None = None
    diff_cut: int = 0  # diff lines left out
    note: str = ""  # e.g. " (on the first 32,000 characters)"
    oldest: bool = False  # the oldest version kept (it has no version before it)


@dataclass
class View:
    """One item of a kind's section (a watched page, a refresh job...), ready to render."""
    kind: str  # the kind's name, shown in the summary
    css: str  # the HTML section's class and anchor: "target", "refresh"
    name: str
    subtitle: str  # after the name: a URL, "refresh job"
    link: str | None  # the subtitle is a link to this (a web address)
    every: str | None
    error_streak: int
    last_error: str | None
    failed_word: str  # "failed check": the streak's noun
    quiet: str  # the status without a streak: "last check succeeded"
    quiet_ok: bool  # whether that status is good news (green)
    facts: list[str]  # text lines under the header (the last error among them)
    meta: list[str]  # the HTML line's parts after the schedule
    timeline: Timeline
    chart: Chart
    interval: int | None
    columns: list[Column]
    # The tables' rows, made when rendered (the summary needs none of them): the text table's
    # days, and the HTML table's (days, or weeks of a long window).
    days: Callable[[], list[Row]]
    total: list[str]  # the text table's last line's cells
    periods: Callable[[], list[Row]]
    day_count: int  # days with a run, a failure or a scheduled run
    days_words: str  # the HTML table's summary, after "N days: "
    missed: int = 0
    gaps: list[Gap] = field(default_factory=list)
    earlier_gaps: int = 0
    versions: list[VersionView] = field(default_factory=list)
    versions_total: int = 0  # versions kept in all


@dataclass
class Tables:
    """A kind's part of the database's account: rows per table, bytes added since the window's
    growth start, when its history began, and phrases for the summary ("4 checks recorded")."""
    rows: dict[str, int]
    grown: float = 0.0
    began: datetime | None = None
    records: list[str] = field(default_factory=list)


@dataclass
class Section:
    """A kind's section: its items (the kind's own records), how each is viewed, its tables.
    Views are made as the report is rendered, one at a time: a year of days' rows for a hundred
    targets is never held at once."""
    items: list
    view: Callable[[object], View]
    tables: Tables
