"""Report benchmark: `python -m functions.report` on 100 targets with a year of 10-minute checks.

    make bench-report      (or: python -m bench.report_speed [--targets 100] [--days 365] [--repeat 3])

Uses $DATABASE_URL if set (its bench-* targets and refresh jobs are replaced), else a throwaway
local PostgreSQL. The history is written in bulk SQL (generate_series, one statement per table),
in the shape record_check leaves it: one content row per version, check times in segments of
SEGMENT_SIZE, the newest ERROR_HISTORY failures. Per target: a check every 10 minutes up to now,
2% of runs skipped and 0.5% failed at random, a 3-hour outage every 30 days, a new version every
6 hours to 7 days (every 2 hours back and forth between two versions for 1 target in 20); three
targets failing right now, one stopped two days ago. Plus four refresh jobs (three daily, one
hourly) with a year of runs. Each case runs the report in a child process: wall time, peak RSS
(os.wait4 on that child) and the size of what it wrote. Prints a Markdown table.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from devtools import localpg
from shared.app import schema
from shared.core import db
from shared.scrape import store

SLOT = 600  # seconds: every 10 minutes

# One row per 10-minute slot of every bench target, and what happened in it: `skip` (no run:
# 2% at random, plus 02:00-05:00 every 30th day), `fail` (0.5% at random, and the last runs of
# targets 0-2, which are failing now), else `check` of version `v`. Target 99 stopped 2 days ago.
SLOTS = """
CREATE TEMP TABLE bench_slots AS
WITH s AS (
    SELECT t.id AS target_id, t.n, i,
           CAST(:end AS timestamptz) - (:slots - 1 - i) * interval '10 minutes' AS ts,
           abs(hashint8(CAST(t.n AS bigint) * 100000000 + i)) % 1000 AS dice  -- deterministic "random"
    FROM (SELECT id, CAST(substr(name, 7) AS int) AS n FROM scrape_targets WHERE name LIKE 'bench-%') t,
         generate_series(0, :slots - 1) AS i
)
SELECT target_id, n, i, ts,
       CASE WHEN n = 99 AND i >= :slots - 288 THEN 'skip'
            WHEN dice < 20 OR (CAST(ts AS date) - date '2000-01-01') % 30 = n % 30
                              AND extract(hour FROM ts AT TIME ZONE 'UTC') BETWEEN 2 AND 4 THEN 'skip'
            WHEN dice < 25 OR n < 3 AND i >= :slots - 3 * (n + 1) THEN 'fail'
            ELSE 'check' END AS kind,
       CASE WHEN n % 20 = 5 THEN (i / 12) % 2            -- back and forth every 2 hours
            ELSE i / (36 * (1 + n % 28)) END AS v        -- a new version every 6 h to 7 days
FROM s
"""

# The versions' bodies (~1.5 kB, one line differing per version) and content rows.
CONTENTS = """
CREATE TEMP TABLE bench_versions AS
SELECT target_id, v, string_agg(CASE WHEN j = v % 40 THEN format('item %s: changed in version %s', j, v)
                                     ELSE format('item %s: the council agenda, unchanged text', j) END,
                                E'\n' ORDER BY j) AS body
FROM (SELECT DISTINCT target_id, v FROM bench_slots WHERE kind = 'check') d, generate_series(0, 39) AS j
GROUP BY target_id, v;
ALTER TABLE bench_versions ADD COLUMN content_id int;
WITH stats AS (
    SELECT target_id, v, count(*) AS checks, min(ts) AS first_seen, max(ts) AS last_seen
    FROM bench_slots WHERE kind = 'check' GROUP BY target_id, v
), inserted AS (
    INSERT INTO scrape_contents (target_id, hash, body, checks, first_seen, last_seen)
    SELECT b.target_id, sha256(convert_to(b.body, 'UTF8')), b.body, s.checks, s.first_seen, s.last_seen
    FROM bench_versions b JOIN stats s USING (target_id, v)
    RETURNING id, target_id, hash
)
UPDATE bench_versions b SET content_id = inserted.id FROM inserted
WHERE inserted.target_id = b.target_id AND inserted.hash = sha256(convert_to(b.body, 'UTF8'))
"""

# Check times in segments of :size per content, in time order, as record_check appends them.
SEGMENTS = """
INSERT INTO scrape_seen (content_id, segment, seen_at)
SELECT content_id, segment, array_agg(ts ORDER BY ts)
FROM (SELECT b.content_id, s.ts, (row_number() OVER (PARTITION BY b.content_id ORDER BY s.ts) - 1) / :size AS segment
      FROM bench_slots s JOIN bench_versions b USING (target_id, v) WHERE s.kind = 'check') c
GROUP BY content_id, segment
"""

# The newest :keep failures per target, and each target's state (its last check and content,
# its last change: the first check of its current content after any other content, its streak).
ERRORS_AND_STATE = """
INSERT INTO scrape_errors (target_id, at, error)
SELECT target_id, ts, 'HTTP 503 Service Unavailable'
FROM (SELECT target_id, ts, row_number() OVER (PARTITION BY target_id ORDER BY ts DESC) AS newer
      FROM bench_slots WHERE kind = 'fail') f
WHERE newer <= :keep;
WITH last AS (  -- each target's last check
    SELECT DISTINCT ON (target_id) target_id, ts, v FROM bench_slots WHERE kind = 'check' ORDER BY target_id, ts DESC
), other AS (  -- its last check of another version
    SELECT s.target_id, max(s.ts) AS ts FROM bench_slots s JOIN last USING (target_id)
    WHERE s.kind = 'check' AND s.v <> last.v GROUP BY s.target_id
), changed AS (  -- the first check of the current version after it
    SELECT s.target_id, min(s.ts) AS ts FROM bench_slots s JOIN last USING (target_id) LEFT JOIN other USING (target_id)
    WHERE s.kind = 'check' AND s.v = last.v AND s.ts > coalesce(other.ts, '-infinity') GROUP BY s.target_id
), failed AS (
    SELECT f.target_id, count(*) FILTER (WHERE f.ts > last.ts) AS streak, max(f.ts) AS at
    FROM bench_slots f JOIN last USING (target_id) WHERE f.kind = 'fail' GROUP BY f.target_id
), state AS (
    SELECT last.target_id, last.ts AS last_ok, b.content_id, changed.ts AS changed,
           coalesce(failed.streak, 0) AS streak, failed.at AS failed
    FROM last JOIN bench_versions b USING (target_id, v) JOIN changed USING (target_id)
    LEFT JOIN failed USING (target_id)
)
UPDATE scrape_targets t SET last_content_id = content_id, last_ok_at = last_ok, last_changed_at = changed,
       error_streak = streak, last_error = CASE WHEN failed IS NOT NULL THEN 'HTTP 503 Service Unavailable' END,
       last_error_at = failed
FROM state WHERE t.id = state.target_id
"""

# Refresh jobs with a year of runs: daily, daily and failing for its last 3 runs, daily with a
# 10-day pause, hourly with 1% failures. A run takes 2 to 60 s.
REFRESH = """
INSERT INTO refresh_jobs (name) VALUES ('bench-daily'), ('bench-daily-failing'), ('bench-daily-paused'),
                                       ('bench-hourly');
INSERT INTO refresh_runs (job_id, run_key, started_at, ended_at, outcome, via, rows, error)
SELECT j.id, to_char(r.at, 'YYYY-MM-DD"T"HH24:MI'), r.at, r.at + make_interval(secs => 2 + r.dice % 58),
       CASE WHEN r.failed THEN 'error' ELSE 'ok' END, CASE WHEN r.failed THEN NULL ELSE 'SQL API' END,
       CASE WHEN r.failed THEN NULL ELSE 412 END, CASE WHEN r.failed THEN 'HTTP 500: function failed' END
FROM refresh_jobs j,
     LATERAL (SELECT at, abs(hashint8(j.id * 1000000 + k)) % 1000 AS dice,
                     j.name = 'bench-daily-failing' AND k >= n - 3
                     OR j.name = 'bench-hourly' AND abs(hashint8(j.id * 1000000 + k)) % 100 = 0 AS failed
              FROM (SELECT CASE WHEN j.name = 'bench-hourly' THEN 24 * :days ELSE :days END AS n) c,
                   generate_series(0, n - 1) AS k,
                   LATERAL (SELECT date_trunc('hour', CAST(:end AS timestamptz))
                                   - (n - 1 - k) * CASE WHEN j.name = 'bench-hourly' THEN interval '1 hour'
                                                        ELSE interval '1 day' END AS at) a
              WHERE NOT (j.name = 'bench-daily-paused' AND k BETWEEN n - 100 AND n - 91)) r
WHERE j.name LIKE 'bench-%';
UPDATE refresh_jobs j SET last_ok_at = (SELECT max(ended_at) FROM refresh_runs WHERE job_id = j.id AND outcome = 'ok'),
       last_error_at = (SELECT max(ended_at) FROM refresh_runs WHERE job_id = j.id AND outcome = 'error'),
       last_error = (SELECT error FROM refresh_runs WHERE job_id = j.id AND outcome = 'error' ORDER BY started_at DESC LIMIT 1),
       error_streak = CASE WHEN j.name = 'bench-daily-failing' THEN 3 ELSE 0 END
WHERE j.name LIKE 'bench-%'
"""


def fill(con, targets: int, days: int, end: datetime) -> int:
    """Write the bench history; returns the number of check times stored."""
    con.run("DELETE FROM scrape_targets WHERE name LIKE 'bench-%'")
    con.run("DELETE FROM refresh_jobs WHERE name LIKE 'bench-%'")
    con.run("INSERT INTO scrape_targets (name, url) SELECT format('bench-%s', lpad(n::text, 3, '0')),"
            " format('http://bench.invalid/%s', n) FROM generate_series(0, :t - 1) n", t=targets)
    slots = days * 86400 // SLOT
    con.run("DROP TABLE IF EXISTS bench_slots, bench_versions")
    con.run("SET work_mem = '256MB'")  # this session's sorts of millions of slots, in memory
    con.run(SLOTS, end=end, slots=slots)
    con.run("ANALYZE bench_slots")
    for statement in CONTENTS.split(";"):
        con.run(statement)
    con.run(SEGMENTS, size=store.SEGMENT_SIZE)
    first, second = ERRORS_AND_STATE.split(";", 1)
    con.run(first, keep=store.ERROR_HISTORY)
    con.run(second)
    for statement in REFRESH.split(";"):
        con.run(statement, **{k: v for k, v in {"days": days, "end": end}.items() if f":{k}" in statement})
    con.run("DROP TABLE bench_slots, bench_versions")
    con.run("VACUUM ANALYZE")
    return con.run("SELECT coalesce(sum(checks), 0) FROM scrape_contents")[0][0]


def jobs_file(folder: Path, targets: int) -> Path:
    path = folder / "jobs.toml"
    lines = [f'[[scrape]]\nname = "bench-{n:03d}"\nurl = "http://bench.invalid/{n}"\nevery = "10m"\n'
             for n in range(targets)]
    lines += [f'[[refresh]]\nname = "{name}"\nmode = "postgres"\nsql = "SELECT 1"\nevery = "{every}"\n'
              for name, every in (("bench-daily", "1d"), ("bench-daily-failing", "1d"),
                                  ("bench-daily-paused", "1d"), ("bench-hourly", "1h"))]
    path.write_text("\n".join(lines))
    return path


def measure(args: list[str], env: dict, folder: Path) -> dict:
    """Run `python -m functions.report ARGS` once: wall time, the child's peak RSS, output sizes."""
    out = folder / "stdout"
    with out.open("wb") as stdout:
        t0 = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "functions.report", *args], stdout=stdout, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"report {' '.join(args)} exited {child.returncode}")
    html = folder / "report.html"
    html_bytes = out.stat().st_size if "-" in args else (html.stat().st_size if html.exists() else 0)
    result = {"wall": wall, "rss": usage.ru_maxrss * 1024, "stdout": out.stat().st_size, "html": html_bytes}
    html.unlink(missing_ok=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--days", type=int, default=365, help="days of history written")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (the median is shown)")
    args = parser.parse_args()

    url, pgdata = os.environ.get("DATABASE_URL"), None
    folder = Path(tempfile.mkdtemp(prefix="bench-report-"))
    folder.chmod(0o755)
    if not url:
        pgdata = folder / "pgdata"
        url = localpg.ensure_server(pgdata)
    try:
        run(url, folder, args)
    finally:
        if pgdata:
            localpg.stop_server(pgdata)


def run(url: str, folder: Path, args) -> None:
    con = db.connect(url, statement_timeout="0")
    schema.ensure(con)
    end = datetime.fromtimestamp(time.time() // SLOT * SLOT, timezone.utc)  # the last slot: now
    t0 = time.perf_counter()
    checks = fill(con, args.targets, args.days, end)
    filled = time.perf_counter() - t0
    size = con.run("SELECT pg_database_size(current_database())")[0][0]
    con.close()
    print(f"history: {args.targets} targets, {checks:,} check times, {args.days} days, "
          f"database {size / 2**20:.0f} MB, written in {filled:.1f} s\n")

    env = {**os.environ, "DATABASE_URL": url, "JOBS_FILE": str(jobs_file(folder, args.targets))}
    env.pop("JOBS_TOML", None)
    html = str(folder / "report.html")
    cases = [("default (14 days)", ["--html", html]), ("--days 365", ["--days", "365", "--html", html]),
             ("--days 365 --html -", ["--days", "365", "--html", "-"]),
             ("--feed - (14 days)", ["--feed", "-"]), ("--days 365 --feed -", ["--days", "365", "--feed", "-"])]
    print("| case | wall time (median, range) | peak RSS | HTML (or feed) | text |")
    print("|---|---|---|---|---|")
    for label, case in cases:
        runs = [measure(case, env, folder) for _ in range(args.repeat)]
        walls = sorted(r["wall"] for r in runs)
        text = "" if "-" in case else f"{max(r['stdout'] for r in runs) / 2**20:.2f} MB"
        print(f"| `{label}` | {statistics.median(walls):.2f} s ({walls[0]:.2f}–{walls[-1]:.2f}) "
              f"| {max(r['rss'] for r in runs) / 2**20:.0f} MB | {max(r['html'] for r in runs) / 2**20:.2f} MB "
              f"| {text} |")
    print(f"\n{args.repeat} runs per case; peak RSS is the largest of them")


if __name__ == "__main__":
    main()
