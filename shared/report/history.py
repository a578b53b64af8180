"""The history report: is the watcher still running, and what did it see?

Per target: checks, changes, failed checks and missed runs per day (the seed article's
breakdown, per target), last check, last change, the current error streak, gaps in the
schedule, and the database's rows and size against the plan's limit. `text()` renders it
for a terminal, `html()` as one self-contained page (inline CSS, SVG timelines, no network).

Changes are counted as the checks whose content differs from the check before (window
function), not as the seed's `count(DISTINCT body) - 1` per day, which misses a change at
midnight and counts a page that flips back and forth once.
"""

import html as html_escape
import os
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from shared.errors import ConfigError

DEFAULT_DAYS = 14
DEFAULT_PLAN_LIMIT_MB = 1024  # DB_PLAN_LIMIT_MB; set it to your plan's storage cap
GAP_FACTOR = 1.5  # a pause longer than 1.5 intervals between runs is a gap


@dataclass
class Day:
    day: date
    checks: int = 0
    changes: int = 0
    errors: int = 0
    expected: int | None = None  # runs the schedule asked for (None: schedule unknown)

    @property
    def missed(self) -> int | None:
        return None if self.expected is None else max(0, self.expected - self.checks - self.errors)


@dataclass
class Gap:
    start: datetime  # the last run before it
    end: datetime  # the next run, or the report's time when none came yet
    missed: int  # scheduled runs that did not happen
    open: bool = False  # no run since `start`


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
    checks: list[tuple[datetime, bool]] = field(default_factory=list)  # in the window: (time, changed)
    errors: list[tuple[datetime, str]] = field(default_factory=list)  # in the window
    days: list[Day] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    @property
    def missed(self) -> int:
        return sum(d.missed or 0 for d in self.days)


@dataclass
class Database:
    size_bytes: int
    limit_bytes: int
    rows: dict[str, int]
    checks: int  # check times recorded (the seed's unnested count)


@dataclass
class Report:
    now: datetime
    since: datetime
    targets: list[Target]
    database: Database
    note: str | None = None  # e.g. why schedules are unknown


# --- reading ----------------------------------------------------------------------------

TARGETS = """
SELECT t.id, t.name, t.url, t.last_ok_at, t.last_changed_at, t.error_streak, t.last_error,
       t.last_error_at, count(c.id), coalesce(sum(c.checks), 0), min(c.first_seen)
FROM scrape_targets t LEFT JOIN scrape_contents c ON c.target_id = t.id
GROUP BY t.id ORDER BY t.name
"""

# Every check of every target with whether it changed the content, over the whole history
# (a check is a change when its content differs from the check before), kept from :since on.
# Checks in the window and whether each changed the content. Only segments that reach into
# the window are unnested, plus, per target, the one that ended last before it (its first check
# in the window compares with that): a year of history costs no more than the window.
CHECKS = """
WITH recent AS (
    SELECT c.target_id, c.id AS content_id, s.seen_at
    FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id
    WHERE s.seen_at[cardinality(s.seen_at)] >= :since
), older AS (
    SELECT DISTINCT ON (c.target_id) c.target_id, c.id AS content_id, s.seen_at
    FROM scrape_contents c JOIN scrape_seen s ON s.content_id = c.id
    WHERE s.seen_at[cardinality(s.seen_at)] < :since
    ORDER BY c.target_id, s.seen_at[cardinality(s.seen_at)] DESC
), checks AS (
    SELECT target_id, ts, content_id FROM recent, unnest(seen_at) AS ts
    UNION ALL
    SELECT target_id, ts, content_id FROM older, unnest(seen_at) AS ts
), ordered AS (
    SELECT target_id, ts, content_id,
           lag(content_id) OVER (PARTITION BY target_id ORDER BY ts) AS previous
    FROM checks
)
SELECT target_id, ts, previous IS NOT NULL AND previous <> content_id
FROM ordered WHERE ts >= :since ORDER BY target_id, ts
"""

ERRORS = "SELECT target_id, at, error FROM scrape_errors WHERE at >= :since ORDER BY target_id, at"

# Exact counts: these tables stay small (one row per distinct content, per 200 checks, per error).
ROWS = """
SELECT (SELECT count(*) FROM scrape_targets), (SELECT count(*) FROM scrape_contents),
       (SELECT count(*) FROM scrape_seen), (SELECT count(*) FROM scrape_errors),
       (SELECT coalesce(sum(checks), 0) FROM scrape_contents), pg_database_size(current_database())
"""


def plan_limit_bytes() -> int:
    raw = os.environ.get("DB_PLAN_LIMIT_MB") or str(DEFAULT_PLAN_LIMIT_MB)
    try:
        megabytes = float(raw)
    except ValueError:
        raise ConfigError(f"DB_PLAN_LIMIT_MB must be a number of megabytes, not {raw!r}") from None
    return int(megabytes * 1024 * 1024)


def build(con, schedules: dict[tuple[str, str], str | None], now: datetime | None = None, days: int = DEFAULT_DAYS,
          note: str | None = None) -> Report:
    """Read the report from the database. `schedules` maps (kind, job name) to the job's `every`
    ("10m", "1h", "1d"; None for cron); jobs not in it get no missed-run counts."""
    from shared.platform.schedule import EVERY

    now = now or datetime.now(timezone.utc)
    since = datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(), timezone.utc)
    checks: dict[int, list] = {}
    for target_id, ts, changed in con.run(CHECKS, since=since):
        checks.setdefault(target_id, []).append((ts, changed))
    errors: dict[int, list] = {}
    for target_id, at, error in con.run(ERRORS, since=since):
        errors.setdefault(target_id, []).append((at, error))
    targets = []
    for row in con.run(TARGETS):
        target_id, name, url, last_ok, last_change, streak, last_error, last_error_at, contents, total, first = row
        every = schedules.get(("scrape", name))
        target = Target(name, url, every, EVERY.get(every), last_ok, last_change, streak, last_error,
                        last_error_at, contents, int(total), first, checks.get(target_id, []),
                        errors.get(target_id, []))
        target.days = _days(target, since, now)
        target.gaps = _gaps(target, now)
        targets.append(target)
    n_targets, n_contents, n_seen, n_errors, n_checks, size = con.run(ROWS)[0]
    database = Database(size, plan_limit_bytes(), {"scrape_targets": n_targets, "scrape_contents": n_contents,
                                                   "scrape_seen": n_seen, "scrape_errors": n_errors}, int(n_checks))
    return Report(now, since, targets, database, note)


def _days(target: Target, since: datetime, now: datetime) -> list[Day]:
    by_day: dict[date, Day] = {}
    for ts, changed in target.checks:
        day = by_day.setdefault(ts.date(), Day(ts.date()))
        day.checks += 1
        day.changes += changed
    for at, _ in target.errors:
        by_day.setdefault(at.date(), Day(at.date())).errors += 1
    runs = [ts for ts, _ in target.checks] + [at for at, _ in target.errors]
    first = min([target.first_seen] + runs if target.first_seen else runs, default=None)
    if target.interval and first:
        # Count the schedule's slots from the target's first run up to one interval ago (a
        # run due now may still be on its way), on every day, days without any run included.
        day = max(first.date(), since.date())
        while day <= now.date():
            midnight = datetime.combine(day, time.min, timezone.utc)
            start = max(first, midnight)
            end = min(midnight + timedelta(days=1), now - timedelta(seconds=target.interval))
            by_day.setdefault(day, Day(day)).expected = _slots(start, end, target.interval)
            day += timedelta(days=1)
    return [by_day[d] for d in sorted(by_day)]


def _slots(start: datetime, end: datetime, interval: int) -> int:
    """How many times k * interval (seconds since the epoch) fall in [start, end)."""
    first, last = -(-start.timestamp() // interval), -(-end.timestamp() // interval)
    return max(0, int(last - first))


def _gaps(target: Target, now: datetime) -> list[Gap]:
    if not target.interval:
        return []
    runs = sorted([ts for ts, _ in target.checks] + [at for at, _ in target.errors])
    limit = timedelta(seconds=target.interval * GAP_FACTOR)
    gaps = [Gap(a, b, round((b - a).total_seconds() / target.interval) - 1)
            for a, b in zip(runs, runs[1:]) if b - a > limit]
    if runs and now - runs[-1] > limit:
        gaps.append(Gap(runs[-1], now, int((now - runs[-1]).total_seconds() // target.interval), open=True))
    return gaps


# --- text -------------------------------------------------------------------------------

def _when(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def text(report: Report) -> str:
    lines = [f"Report at {_when(report.now)}, days from {report.since.date()} (UTC)"]
    if report.note:
        lines.append(report.note)
    for t in report.targets:
        lines += ["", f"{t.name}  {t.url}  " + (f"every {t.every}" if t.every else "schedule unknown")]
        lines.append(f"  last check {_when(t.last_check)}, last change {_when(t.last_change)}, "
                     f"error streak {t.error_streak}")
        if t.last_error:
            lines.append(f"  last error {_when(t.last_error_at)}: {t.last_error}")
        lines.append(f"  {t.checks_total} checks in all, {t.contents} distinct contents")
        lines.append(f"  {'day':<10} {'checks':>6} {'changes':>7} {'errors':>6} {'missed':>6}")
        for d in t.days:
            missed = "" if d.missed is None else str(d.missed)
            lines.append(f"  {d.day.isoformat():<10} {d.checks:>6} {d.changes:>7} {d.errors:>6} {missed:>6}")
        totals = [sum(getattr(d, k) for d in t.days) for k in ("checks", "changes", "errors")]
        lines.append(f"  {'Total:':<10} {totals[0]:>6} {totals[1]:>7} {totals[2]:>6} "
                     f"{(str(t.missed) if t.interval else ''):>6}")
        for gap in t.gaps:
            lines.append(f"  {'no run since' if gap.open else 'gap'} {_when(gap.start)}"
                         + ("" if gap.open else f" to {_when(gap.end)}") + f": {gap.missed} runs missed")
    db = report.database
    lines += ["", f"Database: {_size(db.size_bytes)} of {_size(db.limit_bytes)} "
                  f"({100 * db.size_bytes / db.limit_bytes:.1f}% of the plan limit, DB_PLAN_LIMIT_MB); "
                  f"{db.checks} checks recorded",
              "  rows: " + ", ".join(f"{name} {count}" for name, count in db.rows.items())]
    return "\n".join(lines) + "\n"


# --- HTML -------------------------------------------------------------------------------

WIDTH, ROW_HEIGHT = 960, 56

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin: 1.6em 0 .2em; }
.meta { color: #555; margin: 0 0 .4em; } .bad { color: #b00020; } .ok { color: #1b5e20; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
td, th { padding: 1px 10px; text-align: right; } th:first-child, td:first-child { text-align: left; }
tr.short td { background: #fff3e0; }
svg { display: block; background: #fafafa; border: 1px solid #ddd; }
.legend span { margin-right: 1.2em; } .swatch { display: inline-block; width: 10px; height: 10px; }
.hide-healthy section.healthy { display: none; }
"""

# The only script: a switch that hides targets with nothing wrong.
SCRIPT = """
const toggle = document.getElementById("problems-only");
toggle.addEventListener("change", () => document.body.classList.toggle("hide-healthy", toggle.checked));
document.body.dataset.ready = "yes";
"""


def _x(moment: datetime, report: Report) -> float:
    span = (report.now - report.since).total_seconds() or 1
    return round(WIDTH * (moment - report.since).total_seconds() / span, 1)


def _timeline(t: Target, report: Report) -> str:
    e = html_escape.escape
    parts = [f'<svg width="{WIDTH}" height="{ROW_HEIGHT}" viewBox="0 0 {WIDTH} {ROW_HEIGHT}" '
             f'role="img" aria-label="timeline of {e(t.name)}">']
    day = report.since
    while day < report.now:  # midnight lines, labelled
        x = _x(day, report)
        parts.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{ROW_HEIGHT}" stroke="#ddd"/>'
                     f'<text x="{x + 2}" y="{ROW_HEIGHT - 3}" font-size="9" fill="#888">{day:%m-%d}</text>')
        day += timedelta(days=1)
    for gap in t.gaps:
        x1, x2 = _x(max(gap.start, report.since), report), _x(gap.end, report)
        parts.append(f'<rect class="gap" x="{x1}" y="4" width="{max(1.0, x2 - x1)}" height="{ROW_HEIGHT - 18}" '
                     f'fill="#ff9800" fill-opacity=".3"><title>{e(_gap_label(gap))}</title></rect>')
    for ts, changed in t.checks:
        x = _x(ts, report)
        if changed:
            parts.append(f'<line class="change" x1="{x}" y1="4" x2="{x}" y2="{ROW_HEIGHT - 14}" stroke="#1565c0" '
                         f'stroke-width="2"><title>changed {e(_when(ts))}</title></line>')
        else:
            parts.append(f'<line class="check" x1="{x}" y1="18" x2="{x}" y2="{ROW_HEIGHT - 20}" stroke="#9e9e9e"/>')
    for at, error in t.errors:
        x = _x(at, report)
        parts.append(f'<line class="error" x1="{x}" y1="10" x2="{x}" y2="{ROW_HEIGHT - 16}" stroke="#d50000" '
                     f'stroke-width="2"><title>{e(_when(at))}: {e(error)}</title></line>')
    parts.append("</svg>")
    return "".join(parts)


def _gap_label(gap: Gap) -> str:
    if gap.open:
        return f"no run since {_when(gap.start)}: {gap.missed} runs missed"
    return f"gap {_when(gap.start)} to {_when(gap.end)}: {gap.missed} runs missed"


def html(report: Report) -> str:
    e = html_escape.escape
    db = report.database
    sections = []
    for t in report.targets:
        healthy = t.error_streak == 0 and not t.gaps and not t.missed
        status = (f'<span class="bad">{t.error_streak} failed checks in a row: {e(t.last_error or "")}</span>'
                  if t.error_streak else '<span class="ok">last check succeeded</span>')
        rows = "".join(
            f'<tr{" class=short" if d.missed else ""}><td>{d.day.isoformat()}</td><td>{d.checks}</td>'
            f'<td>{d.changes}</td><td>{d.errors}</td><td>{"" if d.missed is None else d.missed}</td></tr>'
            for d in t.days)
        gaps = "".join(f"<li>{e(_gap_label(g))}</li>" for g in t.gaps)
        sections.append(f"""
<section class="target{' healthy' if healthy else ''}" data-target="{e(t.name)}">
<h2>{e(t.name)}</h2>
<p class="meta"><a href="{e(t.url)}">{e(t.url)}</a> · {('every ' + e(t.every)) if t.every else 'schedule unknown'}
 · last check {e(_when(t.last_check))} · last change {e(_when(t.last_change))} · {status}</p>
{_timeline(t, report)}
<details><summary>{len(t.days)} days: {sum(d.checks for d in t.days)} checks, {sum(d.changes for d in t.days)}
 changes, {sum(d.errors for d in t.days)} failed, {t.missed} missed</summary>
<table><tr><th>day</th><th>checks</th><th>changes</th><th>errors</th><th>missed</th></tr>{rows}</table>
{f'<ul>{gaps}</ul>' if gaps else ''}</details>
</section>""")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scrape report {e(_when(report.now))}</title>
<style>{STYLE}</style></head>
<body>
<h1>Scrape report</h1>
<p class="meta">{e(_when(report.now))}, days from {report.since.date()} (UTC).
{e(report.note or '')}</p>
<p class="legend"><span><i class="swatch" style="background:#9e9e9e"></i> check</span>
<span><i class="swatch" style="background:#1565c0"></i> change</span>
<span><i class="swatch" style="background:#d50000"></i> failed check</span>
<span><i class="swatch" style="background:#ffcc80"></i> gap (missed runs)</span>
<label><input type="checkbox" id="problems-only"> only targets with problems</label></p>
{''.join(sections) or '<p>No targets checked yet.</p>'}
<h2>Database</h2>
<p class="meta">{_size(db.size_bytes)} of {_size(db.limit_bytes)} ({100 * db.size_bytes / db.limit_bytes:.1f}% of the
plan limit), {db.checks} checks recorded; rows: {e(', '.join(f'{k} {v}' for k, v in db.rows.items()))}</p>
<script>{SCRIPT}</script>
</body></html>
"""
