"""The refresh kind's section of the history report: per refresh job, runs, failed runs and
missed runs per day and per bucket of the timeline, durations (median and longest), the last
run and the last success, the failure streak and gaps in the schedule. The SQL is in store.py."""

from dataclasses import dataclass, field
from functools import cached_property
from datetime import date, datetime, timedelta

from shared.core import report
from shared.core.report import Chart, Column, Gap, Row, Section, Tables, Timeline, View, Window
from shared.core.text import duration, one_line, plural, when
from shared.refresh import store

CHART = Chart(stack=(("runs", "#81c784", "ok"), ("errors", "#d50000", "errors"), ("running", "#757575", "running")),
              tooltip=(("succeeded", "ok"), ("failed", "errors"), ("running", "running"), ("missed", None)))
COLUMNS = [Column("runs", 6), Column("failed", 6), Column("missed", 6), Column("median", 10), Column("longest", 10)]


@dataclass
class RefreshDay:
    day: date
    runs: int = 0  # failed ones and ones still running included; a retried run is one run
    errors: int = 0
    median_seconds: float | None = None  # of the finished runs
    longest_seconds: float | None = None
    expected: int | None = None  # runs the schedule asked for (None: schedule unknown)
    length: int = 1  # days: more for a row of the HTML table of a long window
    missed_days: int | None = None  # such a row's missed runs: its days' (a busy day makes up for none)

    @property
    def missed(self) -> int | None:
        if self.missed_days is not None:
            return self.missed_days
        return None if self.expected is None else max(0, self.expected - self.runs)

    def row(self) -> Row:
        return Row(self.day, [str(self.runs), str(self.errors), "" if self.missed is None else str(self.missed),
                              duration(self.median_seconds), duration(self.longest_seconds)], self.missed, self.length)


@dataclass
class LastRun:
    started_at: datetime
    outcome: str  # running | ok | error
    seconds: float | None  # None while running
    error: str | None = None

    def label(self) -> str:
        if self.outcome == "ok":
            return f"succeeded in {duration(self.seconds)}"
        if self.outcome == "error":
            return f"failed after {duration(self.seconds)}"
        return "still running"


@dataclass
class Refresh:
    """One refresh job in the report."""
    name: str
    every: str | None  # from the jobs file; None when the job is not in it (or uses cron)
    interval: int | None  # seconds between runs
    error_streak: int
    last_ok: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    runs_total: int
    first_run: datetime | None  # the schedule's slots count from here
    last_run: LastRun | None  # the latest, in the window or not
    median_seconds: float | None = None  # the window's finished runs
    longest_seconds: float | None = None
    timeline: Timeline | None = None  # ok, failed and running runs per bucket of the window
    days: list[RefreshDay] = field(default_factory=list)
    periods: list[RefreshDay] = field(default_factory=list)  # the days in periods of period_days (HTML)
    gaps: list[Gap] = field(default_factory=list)  # the newest SHOWN_GAPS, then the open one
    earlier_gaps: int = 0

    @cached_property  # read once its days are set (section() sets them before anyone reads it)
    def missed(self) -> int:
        return sum(d.missed or 0 for d in self.days)

    def view(self, window: Window) -> View:
        last_run = f"{when(self.last_run.started_at)}: {self.last_run.label()}" if self.last_run else "never"
        facts = [f"last run {last_run}; last success {when(self.last_ok)}, failure streak {self.error_streak}"]
        if self.last_error:
            facts.append(f"last error {when(self.last_error_at)}: {one_line(self.last_error)}")
        facts.append(f"{plural(self.runs_total, 'run')} in all")
        durations = (f"; median {duration(self.median_seconds)}, longest {duration(self.longest_seconds)}"
                     if self.longest_seconds is not None else "")
        runs, errors = sum(d.runs for d in self.days), sum(d.errors for d in self.days)
        missed = self.missed
        return View(
            kind="refresh", css="refresh", name=self.name, subtitle="refresh job", link=None, every=self.every,
            error_streak=self.error_streak, last_error=self.last_error, failed_word="failed run",
            # the streak is 0 after a success, or before any run ended
            quiet="last finished run succeeded" if self.last_ok else "no run finished yet", quiet_ok=bool(self.last_ok),
            facts=facts, meta=[f"last run {last_run}", f"last success {when(self.last_ok)}"],
            timeline=self.timeline, chart=CHART, interval=self.interval, columns=COLUMNS,
            days=lambda: [d.row() for d in self.days],
            total=[str(runs), str(errors), str(missed) if self.interval else "",
                   duration(self.median_seconds), duration(self.longest_seconds)],
            periods=lambda: [d.row() for d in self.periods],
            day_count=len(self.days),
            days_words=f"{plural(runs, 'run')}, {errors} failed, {missed} missed{durations}",
            missed=missed, gaps=self.gaps, earlier_gaps=self.earlier_gaps)


def section(con, window: Window) -> Section:
    """The refresh kind's section of the report (shared.core.report)."""
    since, now, period = window.since, window.now, window.period_days
    days: dict[int, dict[date, RefreshDay]] = {}
    periods: dict[int, dict[int, RefreshDay]] = {}
    whole: dict[int, tuple] = {}  # job id -> (median, longest) over the window
    for job_id, day, k, runs, errors, median, longest in store.report_days(con, since, period):
        if day is not None:
            days.setdefault(job_id, {})[day] = RefreshDay(day, runs, errors, median, longest)
        elif k is not None:
            start = (since + timedelta(days=k * period)).date()
            periods.setdefault(job_id, {})[k] = RefreshDay(start, runs, errors, median, longest, length=period)
        else:
            whole[job_id] = (median, longest)
    rows = store.report_jobs(con)
    timelines = {row[0]: window.timeline(("ok", "errors", "running")) for row in rows}
    for job_id, k, ok, errors, running in store.report_buckets(con, since, window.bucket):
        for name, n in (("ok", ok), ("errors", errors), ("running", running)):
            timelines[job_id].put(name, k, n)
    gaps: dict[int, tuple[list, int]] = {}
    for job_id, before, start, count in store.report_gaps(con, since, window.gap_limits(), report.SHOWN_GAPS):
        gaps.setdefault(job_id, ([], count))[0].append((before, start))
    jobs = []
    for row in rows:
        job_id, name, streak, last_ok, last_error, last_error_at, total, first = row[:8]
        last_started, last_outcome, last_seconds, last_run_error = row[8:]
        job = Refresh(name, window.every(name), window.interval(name), streak, last_ok, last_error, last_error_at,
                      total, first,
                      LastRun(last_started, last_outcome, last_seconds, last_run_error) if last_started else None,
                      *whole.get(job_id, (None, None)), timelines[job_id])
        by_day = days.get(job_id, {})
        for day, expected in report.expected_per_day(first, job.interval, since, now).items():
            by_day.setdefault(day, RefreshDay(day)).expected = expected
        job.days = [by_day[d] for d in sorted(by_day)]
        report.schedule(job.timeline, first, job.interval, now)
        job.periods = _periods(job.days, periods.get(job_id, {}), since, period)
        pairs, count = gaps.get(job_id, ([], 0))
        job.gaps, job.earlier_gaps = report.gaps(pairs, count, last_started, job.interval, now)
        jobs.append(job)
    n_jobs, n_runs, grown, began = store.report_tables(con, window.growth_since)
    return Section(jobs, lambda job: job.view(window),
                   Tables({"refresh_jobs": n_jobs, "refresh_runs": n_runs}, float(grown), began))


def _periods(days: list[RefreshDay], by_period: dict[int, RefreshDay], since: datetime,
             period: int) -> list[RefreshDay]:
    """A refresh job's days in periods of `period` days (its own days when that is 1): the
    durations from the query's periods, the runs and missed runs summed from the days."""
    if period == 1:
        return days
    for d in days:
        k = (d.day - since.date()).days // period
        row = by_period.setdefault(k, RefreshDay(since.date() + timedelta(days=k * period), length=period))
        if d.expected is not None:
            row.expected, row.missed_days = (row.expected or 0) + d.expected, (row.missed_days or 0) + d.missed
    return [by_period[k] for k in sorted(by_period)]
