"""The history report rendered: `text()` for a terminal, `html()` as one self-contained page
(inline CSS, SVG timelines, no network, fits a phone's width). shared/app/report/model.py reads
what they show.

The page's size is bounded whatever the history's length: a timeline draws at most
MAX_COLUMNS columns (buckets), the tables of a long window have a row per week, a target shows
its newest versions with their diffs cut short, and only the newest gaps are listed."""

import html as html_escape
import math
from datetime import timedelta

from shared.app.report.model import Database, Report
from shared.core.report import Gap, Row, Timeline, View
from shared.core.text import one_line, plural, size, when


def _gap_label(gap: Gap) -> str:
    if gap.open:
        return f"no run since {when(gap.start)}: {plural(gap.missed, 'run')} missed"
    return f"gap {when(gap.start)} to {when(gap.end)}: {plural(gap.missed, 'run')} missed"


def _earlier_gaps(n: int) -> str:
    return f"{plural(n, 'earlier gap')} in the window, not listed" if n else ""


# --- summary ----------------------------------------------------------------------------

# What is wrong, worst first: failing now, stopped (no run for over 1.5 intervals), runs missed.
STATES = ("failing", "stopped", "missed", "ok")


def _state(view: View) -> tuple[str, str]:
    """The worst state of an item (a target, a refresh job) and a few words about it."""
    if view.error_streak:
        return "failing", f"{plural(view.error_streak, view.failed_word)} in a row: {one_line(view.last_error or '', 120)}"
    stopped = next((g for g in view.gaps if g.open), None)
    if stopped:
        return "stopped", _gap_label(stopped)
    gaps = len(view.gaps) + view.earlier_gaps
    if view.missed or gaps:
        return "missed", f"{plural(view.missed, 'run')} missed" + (f", {plural(gaps, 'gap')}" if gaps else "")
    return "ok", "ok"


def summary(report: Report) -> list[tuple[str, str, str, str, str]]:
    """(state, kind, name, words, anchor in the page) for every item of every kind, problems first."""
    rows = [(*_state(view), view.kind, view.name, anchor) for view, anchor in _anchored(report)]
    rows.sort(key=lambda r: (STATES.index(r[0]), r[3]))
    return [(state, kind, name, words, anchor) for state, words, kind, name, anchor in rows]


def _anchored(report: Report):
    """Each item's view with its anchor in the page: its kind's css name and its place there."""
    counts: dict[str, int] = {}
    for view in report.views():
        yield view, f"{view.css}{counts.get(view.css, 0)}"
        counts[view.css] = counts.get(view.css, 0) + 1


def _counts(rows) -> str:
    found = [f"{sum(1 for r in rows if r[0] == s)} {s}" for s in STATES if any(r[0] == s for r in rows)]
    return ", ".join(found) or "nothing checked or refreshed yet"


def _forecast(db: Database) -> str:
    if db.growth_per_day is None:
        return "growth: not enough history yet for a forecast (a day at least)"
    line = f"growth: {size(db.growth_per_day)} a day (over the last {db.growth_days:.1f} days)"
    if db.days_left is None:
        return line + ", not growing toward DB_PLAN_LIMIT_MB"
    return line + f", {db.days_left:,.0f} days left before DB_PLAN_LIMIT_MB"


def _records(db: Database) -> str:
    return "".join(f"; {phrase}" for phrase in db.records)


# --- text -------------------------------------------------------------------------------

def text(report: Report) -> str:
    lines = [f"Report at {when(report.now)}, days from {report.since.date()} (UTC)"]
    if report.note:
        lines.append(report.note)
    rows = summary(report)
    lines += ["", f"Summary: {_counts(rows)}"]
    lines += [f"  {state:<8} {kind:<8} {name}: {words}" for state, kind, name, words, _ in rows if state != "ok"]
    lines += [f"  overdue  {kind:<8} {name}: no run since {when(since)} (its scheduler entry stopped, or never existed)"
              for kind, name, since in report.overdue]
    lines += [f"  notify   {kind:<8} {name}: a notification failed {when(at)}: {one_line(reason, 200)}"
              for kind, name, at, reason in report.undelivered]
    for view in report.views():
        lines += ["", *_item_text(view)]
    db = report.database
    lines += ["", f"Database: {size(db.size_bytes)} of {size(db.limit_bytes)} "
                  f"({100 * db.size_bytes / db.limit_bytes:.1f}% of the plan limit, DB_PLAN_LIMIT_MB){_records(db)}",
              "  rows: " + ", ".join(f"{name} {count}" for name, count in db.rows.items()),
              f"  {_forecast(db)}"]
    return "\n".join(lines) + "\n"


def _item_text(view: View) -> list[str]:
    lines = [f"{view.name}  {one_line(view.subtitle)}  " + (f"every {view.every}" if view.every else "schedule unknown")]
    lines += [f"  {fact}" for fact in view.facts]
    lines.append(f"  {'day':<10}" + "".join(f" {c.title:>{c.width}}" for c in view.columns))
    for row in view.days():
        lines.append(_text_row(view, row.day.isoformat(), row.cells))
    lines.append(_text_row(view, "Total:", view.total))
    earlier = [f"  {_earlier_gaps(view.earlier_gaps)}"] if view.earlier_gaps else []
    return lines + earlier + [f"  {_gap_label(gap)}" for gap in view.gaps]


def _text_row(view: View, first: str, cells: list[str]) -> str:
    return (f"  {first:<10}" + "".join(f" {cell:>{c.width}}" for c, cell in zip(view.columns, cells))).rstrip()


# --- HTML -------------------------------------------------------------------------------

MAX_COLUMNS = 400  # a timeline's columns: buckets, several to a column for a very long window
HEIGHT = 40  # the SVG's own units; CSS stretches it to the page's width
TICK = 8  # the changes' strip along the top

STYLE = """
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; padding: .5em 12px 2em; max-width: 1000px; color: #222; }
h1 { font-size: 1.4em; margin: .4em 0; } h2 { font-size: 1.1em; margin: 1.6em 0 .2em; overflow-wrap: anywhere; }
.meta { color: #555; margin: 0 0 .4em; overflow-wrap: anywhere; }
.bad, .failing { color: #b00020; } .ok { color: #1b5e20; } .stopped { color: #e65100; } .missed { color: #8d6e00; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
td, th { padding: 1px 10px; text-align: right; } th:first-child, td:first-child { text-align: left; }
.scroll { overflow-x: auto; max-width: 100%; }
tr.short td { background: #fff3e0; }
table.summary td { text-align: left; vertical-align: top; padding: 2px 8px 2px 0; }
table.summary td:last-child { overflow-wrap: anywhere; }
.state { font-weight: 600; font-size: .85em; text-transform: uppercase; }
svg { display: block; width: 100%; height: 48px; background: #fafafa; border: 1px solid #ddd; touch-action: pan-y; }
.axis { display: flex; justify-content: space-between; color: #888; font-size: 11px; }
.legend span { margin-right: 1.2em; white-space: nowrap; } .swatch { display: inline-block; width: 10px; height: 10px; }
details { margin: .3em 0; } summary { cursor: pointer; }
pre.diff { overflow-x: auto; font-size: 12px; background: #f6f8fa; padding: 4px 6px; margin: .2em 0 .6em; }
pre.diff .a { color: #1b5e20; } pre.diff .d { color: #b00020; } pre.diff .h { color: #6a1b9a; }
ol.versions { padding-left: 1.4em; }
#tip { position: fixed; z-index: 1; background: #222; color: #fff; font-size: 12px; padding: 3px 6px;
       border-radius: 3px; pointer-events: none; max-width: 90vw; }
.hide-healthy section.healthy, .hide-healthy tr.ok { display: none; }
@media (max-width: 600px) {
  body { font-size: 14px; } td, th { padding: 1px 4px; } table.summary td.kind { display: none; }
}
"""

# The page's script: the switch that hides targets and jobs with nothing wrong, and the
# timeline's hover (or tap) text, read from each SVG's data-t (start, seconds per column),
# data-l (labels) and data-v (per column, its counts: "3,1" is 3 of the first, 1 of the second).
SCRIPT = """
const toggle = document.getElementById("problems-only");
toggle.addEventListener("change", () => document.body.classList.toggle("hide-healthy", toggle.checked));
const tip = document.getElementById("tip");
const utc = s => new Date(s * 1000).toISOString().slice(0, 16).replace("T", " ");
for (const svg of document.querySelectorAll("svg[data-v]")) {
  const [start, step] = svg.dataset.t.split(" ").map(Number), labels = svg.dataset.l.split(",");
  const columns = svg.dataset.v.split(";");
  const show = ev => {
    const box = svg.getBoundingClientRect();
    const at = Math.floor((ev.clientX - box.left) / box.width * columns.length);
    const i = Math.min(columns.length - 1, Math.max(0, at));
    const counts = columns[i].split(",");
    tip.textContent = `${utc(start + i * step)} to ${utc(start + (i + 1) * step)} UTC: ` +
      labels.map((label, j) => `${Number(counts[j] || 0)} ${label}`).join(", ");
    tip.style.left = Math.min(ev.clientX + 8, innerWidth - tip.offsetWidth - 4) + "px";
    tip.style.top = ev.clientY + 14 + "px";
    tip.hidden = false;
  };
  svg.addEventListener("pointermove", show);
  svg.addEventListener("pointerdown", show);
  svg.addEventListener("pointerleave", () => { tip.hidden = true; });
}
document.body.dataset.ready = "yes";
"""


def _columns(timeline: Timeline) -> tuple[int, int]:
    """(buckets per column, number of columns) of a timeline drawn at most MAX_COLUMNS wide."""
    size = len(next(iter(timeline.series.values())))
    per = math.ceil(size / MAX_COLUMNS)
    return per, math.ceil(size / per)


def _merge(values: list[int] | None, per: int) -> list[int] | None:
    return None if values is None else [sum(values[i:i + per]) for i in range(0, len(values), per)]


def _area(fractions: list[float], top: bool = False) -> str:
    """A step path, one unit per column, filled to each column's fraction of the height (from
    the bottom, or from the top); equal neighbours share a step, so a steady series is short."""
    path, level, run = [f"M0 {0 if top else HEIGHT}"], None, 0
    for f in fractions + [None]:
        y = None if f is None else round(HEIGHT * f if top else HEIGHT * (1 - f))
        if y != level and run:
            path.append(f"V{level}h{run}")
            run = 0
        level, run = y, run + 1
    path.append(f"V{0 if top else HEIGHT}Z")
    return "".join(path)


def _ticks(values: list[int]) -> str:
    """A path with a short line at the top of each column whose value is not 0."""
    return "".join(f"M{i}.5 0v{TICK}" for i, v in enumerate(values) if v)


def _svg(name: str, timeline: Timeline, report: Report, layers: list[tuple[str, str, str]],
         tooltip: list[tuple[str, list[int] | None]], gaps: list[Gap]) -> str:
    """The window as one SVG strip, `layers` (class, colour, path) over midnight or month lines
    and the listed gaps; per column the tooltip's counts in data-v."""
    e = html_escape.escape
    per, n = _columns(timeline)
    seconds = timeline.seconds * per
    start = timeline.start.timestamp()
    grid, day = [], timeline.start
    while day < report.now:  # a line at each midnight, or at each month's first day for a long window
        if (report.now - report.since).days <= 31 or day.day == 1:
            grid.append(f"M{(day.timestamp() - start) / seconds:.1f} 0v{HEIGHT}")
        day += timedelta(days=1)
    parts = [f'<svg viewBox="0 0 {n} {HEIGHT}" preserveAspectRatio="none" role="img" '
             f'aria-label="timeline of {e(name)}" data-t="{start:.0f} {seconds}" '
             f'data-l="{e(",".join(label for label, _ in tooltip))}" data-v="{_tooltip_values(tooltip, n)}">',
             f'<path class="grid" d="{"".join(grid)}" stroke="#ddd" vector-effect="non-scaling-stroke"/>']
    spans = []  # the listed gaps, shaded (their words are in the list below the timeline)
    for gap in gaps:
        x1 = max(0.0, (gap.start.timestamp() - start) / seconds)
        x2 = min(n, (gap.end.timestamp() - start) / seconds)
        spans.append(f"M{x1:.2f} 0h{max(0.3, x2 - x1):.2f}v{HEIGHT}H{x1:.2f}Z")
    if spans:
        parts.append(f'<path class="gaps" d="{"".join(spans)}" fill="#ff9800" fill-opacity=".3"/>')
    for css_class, colour, path in layers:
        if path and css_class == "changes":
            parts.append(f'<path class="{css_class}" d="{path}" stroke="{colour}" stroke-width="2" '
                         f'vector-effect="non-scaling-stroke"/>')
        elif path:
            parts.append(f'<path class="{css_class}" d="{path}" fill="{colour}"/>')
    parts.append("</svg>")
    end = min(report.now, timeline.bucket(len(next(iter(timeline.series.values())))))
    return (f'<figure class="timeline" style="margin:.3em 0">{"".join(parts)}<div class="axis">'
            f'<span>{timeline.start:%Y-%m-%d}</span><span>{e(when(end))}</span></div></figure>')


def _tooltip_values(tooltip: list[tuple[str, list[int] | None]], n: int) -> str:
    columns = []
    for i in range(n):
        counts = [str(values[i]) if values is not None else "" for _, values in tooltip]
        while counts and counts[-1] in ("0", ""):
            counts.pop()
        columns.append(",".join(c if c != "0" else "" for c in counts))
    return ";".join(columns)


def _missed(runs: list[int], expected: list[int] | None, interval: int | None, seconds: int) -> list[int] | None:
    """Missed runs per column: only when a column spans an interval at least (a shorter one
    may hold no scheduled run and still have a run, or the reverse)."""
    if expected is None or not interval or seconds < interval:
        return None
    return [max(0, e - r) for e, r in zip(expected, runs)]


def _bars(stack: list[tuple[str, str, list[int]]], missed: list[int] | None, expected: list[int] | None) -> list:
    """A column's runs as stacked bars from the bottom (`stack`: class, colour, counts; the first
    at the bottom) and its missed runs from the top, each a share of what the schedule asked for
    (or, without a schedule, of the busiest column). Drawn tallest first, each over the one before."""
    totals = [sum(column) for column in zip(*(counts for _, _, counts in stack))]
    if missed is None or expected is None:
        shares = [1 / (max(totals, default=0) or 1)] * len(totals)
    else:
        shares = [1 / (max(e, t) or 1) for e, t in zip(expected, totals)]
    layers, below = [], totals
    for css_class, colour, counts in reversed(stack):
        layers.append((css_class, colour, _area([b * f for b, f in zip(below, shares)]) if any(below) else ""))
        below = [b - c for b, c in zip(below, counts)]
    if missed and any(missed):
        layers.append(("missed", "#ffb74d", _area([m * f for m, f in zip(missed, shares)], top=True)))
    return layers


def _item_svg(view: View, report: Report) -> str:
    timeline, chart = view.timeline, view.chart
    per, _ = _columns(timeline)
    series = {name: _merge(values, per) for name, values in timeline.series.items()}
    expected = _merge(timeline.expected, per)
    runs = [sum(column) for column in zip(*(series[name] for _, _, name in chart.stack))]
    missed = _missed(runs, expected, view.interval, timeline.seconds * per)
    layers = _bars([(css, colour, series[name]) for css, colour, name in chart.stack], missed, expected)
    layers += [(css, colour, _ticks(series[name])) for css, colour, name in chart.ticks]
    tooltip = [(label, missed if name is None else series[name]) for label, name in chart.tooltip]
    return _svg(view.name, timeline, report, layers, tooltip, view.gaps)


def _link(url: str) -> str:
    """A target's URL as a link when it is a web address: a stored `javascript:` or `data:`
    URL would run in the report's page when clicked, so it is only shown."""
    e = html_escape.escape
    if url.lower().startswith(("http://", "https://")):
        return f'<a href="{e(url)}">{e(url)}</a>'
    return f"<span>{e(url)}</span>"


def _period(row: Row) -> str:
    if row.length == 1:
        return row.day.isoformat()
    return f"{row.day.isoformat()} +{row.length - 1}d"


def _gaps_html(view: View) -> str:
    e = html_escape.escape
    items = "".join(f"<li>{e(_gap_label(g))}</li>" for g in view.gaps)
    earlier = f"<li>{_earlier_gaps(view.earlier_gaps)}</li>" if view.earlier_gaps else ""
    return f"<ul>{earlier}{items}</ul>" if items or earlier else ""


def _diff_html(lines: list[str]) -> str:
    e = html_escape.escape
    css = {"+": "a", "-": "d", "@": "h"}
    return "\n".join(f'<span class="{css[line[0]]}">{e(line)}</span>' if line[:1] in css else e(line) for line in lines)


def _versions_html(view: View) -> str:
    if not view.versions:
        return ""
    items = []
    for v in view.versions:
        if v.diff is None:
            body = "<p class=meta>the oldest version kept</p>" if v.oldest else ""
        elif not v.diff:
            body = "<p class=meta>no difference in the first characters compared</p>"
        else:
            more = f"\n… {v.diff_cut} more lines" if v.diff_cut else ""
            body = (f"<details><summary>diff against the version before{html_escape.escape(v.note)}</summary>"
                    f'<pre class="diff">{_diff_html(v.diff)}{more}</pre></details>')
        items.append(f"<li><p class=meta>{html_escape.escape(v.head)}</p>{body}</li>")
    return (f'<details class="versions"><summary>{len(view.versions)} newest of '
            f'{plural(view.versions_total, "version")}</summary><ol class="versions">{"".join(items)}</ol></details>')


def _item_html(view: View, anchor: str, report: Report) -> str:
    e = html_escape.escape
    healthy = view.error_streak == 0 and not view.gaps and not view.missed and not view.earlier_gaps
    if view.error_streak:
        status = (f'<span class="bad">{plural(view.error_streak, view.failed_word)} in a row: '
                  f'{e(one_line(view.last_error or ""))}</span>')
    else:
        status = f'<span class="ok">{e(view.quiet)}</span>' if view.quiet_ok else e(view.quiet)
    rows = "".join(  # end tags left out (valid HTML): a year of rows for 100 targets stays small
        f'<tr{" class=short" if row.missed else ""}><td>{_period(row)}' + "".join(f"<td>{e(cell)}" for cell in row.cells)
        for row in view.periods())
    first = "day" if report.period_days == 1 else f"{report.period_days} days from"
    subtitle = _link(view.link) if view.link else e(view.subtitle)
    meta = " · ".join(e(part) for part in view.meta)
    heads = "".join(f"<th>{e(c.title)}</th>" for c in view.columns)
    return f"""
<section class="{view.css}{' healthy' if healthy else ''}" id="{anchor}" data-{view.css}="{e(view.name)}">
<h2>{e(view.name)}</h2>
<p class="meta">{subtitle} · {('every ' + e(view.every)) if view.every else 'schedule unknown'}
 · {meta} · {status}</p>
{_item_svg(view, report)}
<details><summary>{plural(view.day_count, 'day')}: {e(view.days_words)}</summary>
<div class="scroll"><table><tr><th>{first}</th>{heads}</tr>{rows}</table></div>
{_gaps_html(view)}</details>
{_versions_html(view)}
</section>"""


def _summary_html(report: Report, rows) -> str:
    e = html_escape.escape
    lines = "".join(
        f'<tr class="{state}"><td class="state {state}">{state}</td>'
        f'<td><a href="#{anchor}">{e(name)}</a></td>'
        f'<td class="kind">{kind}</td><td>{e(words)}</td></tr>'
        for state, kind, name, words, anchor in rows)
    lines += "".join(
        f'<tr class="failing"><td class="state failing">overdue</td><td>{e(name)}</td><td class="kind">{e(kind)}</td>'
        f'<td>no run since {e(when(since))} (its scheduler entry stopped, or never existed)</td></tr>'
        for kind, name, since in report.overdue)
    lines += "".join(
        f'<tr class="missed"><td class="state missed">notify</td><td>{e(name)}</td><td class="kind">{e(kind)}</td>'
        f'<td>a notification failed {e(when(at))}: {e(one_line(reason, 200))}</td></tr>'
        for kind, name, at, reason in report.undelivered)
    table = f'<div class="scroll"><table class="summary">{lines}</table></div>' if lines else ""
    return f'<section id="summary"><h2>Summary: {e(_counts(rows))}</h2>{table}</section>'


def html(report: Report) -> str:
    e = html_escape.escape
    db = report.database
    rows = summary(report)
    sections = [_item_html(view, anchor, report) for view, anchor in _anchored(report)]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>History report {e(when(report.now))}</title>
<style>{STYLE}</style></head>
<body>
<h1>History report</h1>
<p class="meta">{e(when(report.now))}, days from {report.since.date()} (UTC).
{e(report.note or '')}</p>
<p class="meta">Database: {size(db.size_bytes)} of {size(db.limit_bytes)}
({100 * db.size_bytes / db.limit_bytes:.1f}% of the plan limit); {e(_forecast(db))}.</p>
{_summary_html(report, rows)}
<p class="legend"><span><i class="swatch" style="background:#bdbdbd"></i> checks</span>
<span><i class="swatch" style="background:#81c784"></i> refresh runs</span>
<span><i class="swatch" style="background:#1565c0"></i> change</span>
<span><i class="swatch" style="background:#d50000"></i> failed check or run</span>
<span><i class="swatch" style="background:#ffb74d"></i> missed runs, gaps</span>
<label><input type="checkbox" id="problems-only"> only targets and jobs with problems</label></p>
{''.join(sections) or '<p>Nothing checked or refreshed yet.</p>'}
<h2>Database</h2>
<p class="meta">{size(db.size_bytes)} of {size(db.limit_bytes)} ({100 * db.size_bytes / db.limit_bytes:.1f}% of the
plan limit){e(_records(db))}; rows: {e(', '.join(f'{k} {v}' for k, v in db.rows.items()))};
{e(_forecast(db))}</p>
<div id="tip" hidden></div>
<script>{SCRIPT}</script>
</body></html>
"""
