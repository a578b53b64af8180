"""The history report rendered: `text()` for a terminal, `html()` as one self-contained page
(inline CSS, SVG timelines, no network). shared/report/history.py reads what they show."""

import html as html_escape
from datetime import datetime, timedelta, timezone

from shared.report.history import Gap, Refresh, Report, Run, Target


def _when(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _run_label(run: Run) -> str:
    if run.outcome == "ok":
        return f"succeeded in {_duration(run.seconds)}"
    if run.outcome == "error":
        return f"failed after {_duration(run.seconds)}"
    return "still running"


def _gap_label(gap: Gap) -> str:
    if gap.open:
        return f"no run since {_when(gap.start)}: {gap.missed} runs missed"
    return f"gap {_when(gap.start)} to {_when(gap.end)}: {gap.missed} runs missed"


# --- text -------------------------------------------------------------------------------

def text(report: Report) -> str:
    lines = [f"Report at {_when(report.now)}, days from {report.since.date()} (UTC)"]
    if report.note:
        lines.append(report.note)
    for t in report.targets:
        lines += ["", *_target_text(t)]
    for job in report.refreshes:
        lines += ["", *_refresh_text(job)]
    db = report.database
    lines += ["", f"Database: {_size(db.size_bytes)} of {_size(db.limit_bytes)} "
                  f"({100 * db.size_bytes / db.limit_bytes:.1f}% of the plan limit, DB_PLAN_LIMIT_MB); "
                  f"{db.checks} checks recorded",
              "  rows: " + ", ".join(f"{name} {count}" for name, count in db.rows.items())]
    return "\n".join(lines) + "\n"


def _target_text(t: Target) -> list[str]:
    lines = [f"{t.name}  {t.url}  " + (f"every {t.every}" if t.every else "schedule unknown"),
             f"  last check {_when(t.last_check)}, last change {_when(t.last_change)}, error streak {t.error_streak}"]
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
    return lines + [f"  {_gap_label(gap)}" for gap in t.gaps]


def _refresh_text(job: Refresh) -> list[str]:
    last_run = f"{_when(job.last_run.started_at)}: {_run_label(job.last_run)}" if job.last_run else "never"
    lines = [f"{job.name}  refresh job  " + (f"every {job.every}" if job.every else "schedule unknown"),
             f"  last run {last_run}; last success {_when(job.last_ok)}, failure streak {job.error_streak}"]
    if job.last_error:
        lines.append(f"  last error {_when(job.last_error_at)}: {job.last_error}")
    lines.append(f"  {job.runs_total} runs in all")
    lines.append(f"  {'day':<10} {'runs':>6} {'failed':>6} {'missed':>6} {'median':>10} {'longest':>10}")
    for d in job.days:  # rstrip: a day without finished runs has no durations
        missed = "" if d.missed is None else str(d.missed)
        lines.append(f"  {d.day.isoformat():<10} {d.runs:>6} {d.errors:>6} {missed:>6} "
                     f"{_duration(d.median_seconds):>10} {_duration(d.longest_seconds):>10}".rstrip())
    missed = str(job.missed) if job.interval else ""
    lines.append(f"  {'Total:':<10} {sum(d.runs for d in job.days):>6} {sum(d.errors for d in job.days):>6} "
                 f"{missed:>6} {_duration(job.median_seconds):>10} {_duration(job.longest_seconds):>10}".rstrip())
    return lines + [f"  {_gap_label(gap)}" for gap in job.gaps]


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

# The only script: a switch that hides targets and jobs with nothing wrong.
SCRIPT = """
const toggle = document.getElementById("problems-only");
toggle.addEventListener("change", () => document.body.classList.toggle("hide-healthy", toggle.checked));
document.body.dataset.ready = "yes";
"""


def _x(moment: datetime, report: Report) -> float:
    span = (report.now - report.since).total_seconds() or 1
    return round(WIDTH * (moment - report.since).total_seconds() / span, 1)


def _timeline(name: str, gaps: list[Gap], marks: list[str], report: Report) -> str:
    """The window as one SVG strip: midnight lines, gaps shaded, then the marks on top."""
    e = html_escape.escape
    parts = [f'<svg width="{WIDTH}" height="{ROW_HEIGHT}" viewBox="0 0 {WIDTH} {ROW_HEIGHT}" '
             f'role="img" aria-label="timeline of {e(name)}">']
    day = report.since
    while day < report.now:  # midnight lines, labelled
        x = _x(day, report)
        parts.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{ROW_HEIGHT}" stroke="#ddd"/>'
                     f'<text x="{x + 2}" y="{ROW_HEIGHT - 3}" font-size="9" fill="#888">{day:%m-%d}</text>')
        day += timedelta(days=1)
    for gap in gaps:
        x1, x2 = _x(max(gap.start, report.since), report), _x(gap.end, report)
        parts.append(f'<rect class="gap" x="{x1}" y="4" width="{max(1.0, x2 - x1)}" height="{ROW_HEIGHT - 18}" '
                     f'fill="#ff9800" fill-opacity=".3"><title>{e(_gap_label(gap))}</title></rect>')
    parts += marks
    parts.append("</svg>")
    return "".join(parts)


def _check_marks(t: Target, report: Report) -> list[str]:
    e = html_escape.escape
    marks = []
    for ts, changed in t.checks:
        x = _x(ts, report)
        if changed:
            marks.append(f'<line class="change" x1="{x}" y1="4" x2="{x}" y2="{ROW_HEIGHT - 14}" stroke="#1565c0" '
                         f'stroke-width="2"><title>changed {e(_when(ts))}</title></line>')
        else:
            marks.append(f'<line class="check" x1="{x}" y1="18" x2="{x}" y2="{ROW_HEIGHT - 20}" stroke="#9e9e9e"/>')
    for at, error in t.errors:
        x = _x(at, report)
        marks.append(f'<line class="error" x1="{x}" y1="10" x2="{x}" y2="{ROW_HEIGHT - 16}" stroke="#d50000" '
                     f'stroke-width="2"><title>{e(_when(at))}: {e(error)}</title></line>')
    return marks


# A refresh run's mark: its class and colour by outcome.
RUN_MARKS = {"ok": ("run", "#2e7d32"), "error": ("error", "#d50000"), "running": ("running", "#9e9e9e")}


def _run_marks(job: Refresh, report: Report) -> list[str]:
    e = html_escape.escape
    marks = []
    for run in job.runs:
        x = _x(run.started_at, report)
        css_class, colour = RUN_MARKS.get(run.outcome, RUN_MARKS["running"])
        title = f"{_when(run.started_at)}: {_run_label(run)}" + (f": {run.error}" if run.error else "")
        marks.append(f'<line class="{css_class}" x1="{x}" y1="10" x2="{x}" y2="{ROW_HEIGHT - 16}" stroke="{colour}" '
                     f'stroke-width="2"><title>{e(title)}</title></line>')
    return marks


def _target_html(t: Target, report: Report) -> str:
    e = html_escape.escape
    healthy = t.error_streak == 0 and not t.gaps and not t.missed
    status = (f'<span class="bad">{t.error_streak} failed checks in a row: {e(t.last_error or "")}</span>'
              if t.error_streak else '<span class="ok">last check succeeded</span>')
    rows = "".join(
        f'<tr{" class=short" if d.missed else ""}><td>{d.day.isoformat()}</td><td>{d.checks}</td>'
        f'<td>{d.changes}</td><td>{d.errors}</td><td>{"" if d.missed is None else d.missed}</td></tr>'
        for d in t.days)
    gaps = "".join(f"<li>{e(_gap_label(g))}</li>" for g in t.gaps)
    return f"""
<section class="target{' healthy' if healthy else ''}" data-target="{e(t.name)}">
<h2>{e(t.name)}</h2>
<p class="meta"><a href="{e(t.url)}">{e(t.url)}</a> · {('every ' + e(t.every)) if t.every else 'schedule unknown'}
 · last check {e(_when(t.last_check))} · last change {e(_when(t.last_change))} · {status}</p>
{_timeline(t.name, t.gaps, _check_marks(t, report), report)}
<details><summary>{len(t.days)} days: {sum(d.checks for d in t.days)} checks, {sum(d.changes for d in t.days)}
 changes, {sum(d.errors for d in t.days)} failed, {t.missed} missed</summary>
<table><tr><th>day</th><th>checks</th><th>changes</th><th>errors</th><th>missed</th></tr>{rows}</table>
{f'<ul>{gaps}</ul>' if gaps else ''}</details>
</section>"""


def _refresh_html(job: Refresh, report: Report) -> str:
    e = html_escape.escape
    healthy = job.error_streak == 0 and not job.gaps and not job.missed
    if job.error_streak:
        status = f'<span class="bad">{job.error_streak} failed runs in a row: {e(job.last_error or "")}</span>'
    else:  # the streak is 0 after a success, or before any run ended
        status = '<span class="ok">last finished run succeeded</span>' if job.last_ok else "no run finished yet"
    last_run = f"{_when(job.last_run.started_at)}: {_run_label(job.last_run)}" if job.last_run else "never"
    rows = "".join(
        f'<tr{" class=short" if d.missed else ""}><td>{d.day.isoformat()}</td><td>{d.runs}</td><td>{d.errors}</td>'
        f'<td>{"" if d.missed is None else d.missed}</td><td>{_duration(d.median_seconds)}</td>'
        f'<td>{_duration(d.longest_seconds)}</td></tr>'
        for d in job.days)
    gaps = "".join(f"<li>{e(_gap_label(g))}</li>" for g in job.gaps)
    durations = (f"; median {_duration(job.median_seconds)}, longest {_duration(job.longest_seconds)}"
                 if job.longest_seconds is not None else "")
    return f"""
<section class="refresh{' healthy' if healthy else ''}" data-refresh="{e(job.name)}">
<h2>{e(job.name)}</h2>
<p class="meta">refresh job · {('every ' + e(job.every)) if job.every else 'schedule unknown'}
 · last run {e(last_run)} · last success {e(_when(job.last_ok))} · {status}</p>
{_timeline(job.name, job.gaps, _run_marks(job, report), report)}
<details><summary>{len(job.days)} days: {sum(d.runs for d in job.days)} runs, {sum(d.errors for d in job.days)}
 failed, {job.missed} missed{durations}</summary>
<table><tr><th>day</th><th>runs</th><th>failed</th><th>missed</th><th>median</th><th>longest</th></tr>{rows}</table>
{f'<ul>{gaps}</ul>' if gaps else ''}</details>
</section>"""


def html(report: Report) -> str:
    e = html_escape.escape
    db = report.database
    sections = [_target_html(t, report) for t in report.targets]
    sections += [_refresh_html(job, report) for job in report.refreshes]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>History report {e(_when(report.now))}</title>
<style>{STYLE}</style></head>
<body>
<h1>History report</h1>
<p class="meta">{e(_when(report.now))}, days from {report.since.date()} (UTC).
{e(report.note or '')}</p>
<p class="legend"><span><i class="swatch" style="background:#9e9e9e"></i> check</span>
<span><i class="swatch" style="background:#1565c0"></i> change</span>
<span><i class="swatch" style="background:#2e7d32"></i> refresh run</span>
<span><i class="swatch" style="background:#d50000"></i> failed check or run</span>
<span><i class="swatch" style="background:#ffcc80"></i> gap (missed runs)</span>
<label><input type="checkbox" id="problems-only"> only targets and jobs with problems</label></p>
{''.join(sections) or '<p>Nothing checked or refreshed yet.</p>'}
<h2>Database</h2>
<p class="meta">{_size(db.size_bytes)} of {_size(db.limit_bytes)} ({100 * db.size_bytes / db.limit_bytes:.1f}% of the
plan limit), {db.checks} checks recorded; rows: {e(', '.join(f'{k} {v}' for k, v in db.rows.items()))}</p>
<script>{SCRIPT}</script>
</body></html>
"""
