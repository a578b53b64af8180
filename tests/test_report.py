"""The history report, checked against databases built by real checks and refreshes.

Today's numbers come from real scrape runs against a loopback page and real refreshes on
PostgreSQL; the per-day numbers over past days (the seed's 87-144 checks a day, skipped runs,
a change at midnight; refresh runs, retries and failures) from storage and refresh history
calls with explicit times, since a test cannot wait three days.
"""

import html
import os
import random
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from functions import carto_refresh as refresh_fn
from functions import report as report_fn
from functions import scrape as scrape_fn
from shared.app import schema
from shared.app.report import model as report
from shared.app.report import render
from shared.core import text
from shared.scrape import report as scrape_report
from shared.refresh import store as refresh_history
from shared.scrape import store
from tests.seed import BREAKDOWN as SEED_BREAKDOWN
from tests.test_adopt import command

UTC = timezone.utc



def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2016, 4, day, hour, minute, tzinfo=UTC)


def every_10_minutes(start: datetime, end: datetime):
    while start < end:
        yield start
        start += timedelta(minutes=10)


def build_seed_like_history(con, name="agenda"):
    """Three days in the shape of the seed's table, through the storage API.

    04-04: from 09:30, 87 checks, no change.   04-05: 144 checks, one change at 12:00.
    04-06: content changes at midnight, 10:00 and 20:00; runs 03:00-03:40 skipped (5),
           08:00 and 08:10 failed (2): 137 checks.
    """
    schema.ensure(con)
    url = "http://127.0.0.1/agenda"
    skipped = set(every_10_minutes(at(6, 3, 0), at(6, 3, 50)))
    failed = {at(6, 8, 0), at(6, 8, 10)}
    for moment in every_10_minutes(at(4, 9, 30), at(7, 0, 0)):
        if moment in skipped:
            continue
        if moment in failed:
            store.record_failure(con, name, url, "HTTP 503 Service Unavailable", moment)
            continue
        if moment < at(5, 12, 0):
            body = "v1"
        elif moment < at(6, 0, 0):
            body = "v2"
        elif moment < at(6, 10, 0):
            body = "v3"
        elif moment < at(6, 20, 0):
            body = "v2"  # back to an earlier content: still a change
        else:
            body = "v4"
        store.record_check(con, name, url, body, moment)


def test_per_day_checks_changes_errors_and_missed_runs(db):
    build_seed_like_history(db)
    now = at(7, 0, 5)
    result = report.build(db, {("scrape", "agenda"): "10m"}, now=now, days=4)
    [target] = result.items("scrape")
    days = [(d.day.isoformat(), d.checks, d.changes, d.errors, d.missed) for d in target.days]
    assert days == [
        ("2016-04-04", 87, 0, 0, 0),
        ("2016-04-05", 144, 1, 0, 0),
        ("2016-04-06", 137, 3, 2, 5),
        ("2016-04-07", 0, 0, 0, 0),  # the 00:00 run may still be on its way at 00:05
    ]
    assert [(g.start, g.end, g.missed, g.open) for g in target.gaps] == [(at(6, 2, 50), at(6, 3, 50), 5, False)]
    assert (target.last_check, target.last_change, target.error_streak) == (at(6, 23, 50), at(6, 20, 0), 0)
    assert (target.checks_total, target.contents, target.last_error) == (368, 4, "HTTP 503 Service Unavailable")

    # The seed's breakdown agrees on checks; it counts distinct bodies per day, so it misses
    # the change at midnight on 04-06 (v2 -> v3), which the report counts.
    seed = [tuple(r) for r in db.run(SEED_BREAKDOWN)]
    assert seed == [("2016-04-04", 87, 0), ("2016-04-05", 144, 1), ("2016-04-06", 137, 2), ("Total:", 368, 3)]

    lines = render.text(result).splitlines()
    assert "  2016-04-06    137       3      2      5" in lines
    assert "  Total:        368       4      2      5" in lines
    assert "  gap 2016-04-06 02:50 UTC to 2016-04-06 03:50 UTC: 5 runs missed" in lines


def test_a_stopped_watcher_shows_as_an_open_gap(db):
    build_seed_like_history(db)
    result = report.build(db, {("scrape", "agenda"): "10m"}, now=at(7, 6, 0), days=2)
    [target] = result.items("scrape")
    assert [d.missed for d in target.days] == [5, 36 - 1]  # 00:00-05:50 on 04-07 = 36 slots, 05:50 still due
    assert target.gaps[-1].open and target.gaps[-1].missed == 37
    assert "no run since 2016-04-06 23:50 UTC: 37 runs missed" in render.text(result)


def build_random_history(con, seed=11):
    """Three days of a 10-minute target, `flaky`, through the storage API, with what makes the
    report's SQL work: runs skipped at random and a 2-hour outage (gaps), failures, extra manual
    checks between runs, a page that flips back and forth between versions (segments of
    different contents that overlap in time), changes at midnight, and check times a few seconds
    after the slot. Plus an hourly target, `hourly`, changing at midnight and skipping runs."""
    schema.ensure(con)
    rng = random.Random(seed)
    for slot, moment in enumerate(every_10_minutes(at(4, 0, 0), at(7, 0, 0))):
        moment += timedelta(seconds=rng.randrange(0, 40))
        if rng.random() < 0.05 or at(5, 13, 0) <= moment < at(5, 15, 0):
            continue
        if rng.random() < 0.04:
            store.record_failure(con, "flaky", "http://127.0.0.1/f", "HTTP 502", moment)
            continue
        if slot < 100 or 180 <= slot < 288:
            body = "v1" if slot < 100 else "v3"
        elif slot < 180:
            body = rng.choice(["v1", "v2"])  # flipping back and forth
        elif slot < 330:
            body = "v4"  # from 04-06 00:00: a change at midnight
        else:
            body = rng.choice(["v1", "v2", "v3", "v4", "v5"])
        store.record_check(con, "flaky", "http://127.0.0.1/f", body, moment)
        if rng.random() < 0.05:  # a manual check a few minutes later
            store.record_check(con, "flaky", "http://127.0.0.1/f", body, moment + timedelta(minutes=4))
    for hour in range(3 * 24):
        moment = at(4, 0, 0) + timedelta(hours=hour, seconds=rng.randrange(0, 60))
        if rng.random() < 0.1:
            continue
        store.record_check(con, "hourly", "http://127.0.0.1/h", f"day {moment.day}", moment)


def reference(con, name, interval, since, now):
    """What the report must say about target `name`, computed here from every check time (the
    seed's `scraps` view) and failure, one by one, the way the report did before it scaled:
    per day (checks, changes, failed, missed), and the gaps between runs in the window."""
    checks = sorted((ts, content) for content, times in con.run(
        "SELECT id, seen_at FROM scraps WHERE target = :name", name=name) for ts in times)
    errors = [at for (at,) in con.run("SELECT e.at FROM scrape_errors e JOIN scrape_targets t ON t.id = e.target_id"
                                      " WHERE t.name = :name", name=name)]
    days = {}
    for i, (ts, content) in enumerate(checks):
        if ts >= since:
            day = days.setdefault(ts.date(), [0, 0, 0])
            day[0] += 1
            day[1] += i > 0 and checks[i - 1][1] != content
    for moment in errors:
        if moment >= since:
            days.setdefault(moment.date(), [0, 0, 0])[2] += 1
    runs = sorted([ts for ts, _ in checks if ts >= since] + [e for e in errors if e >= since])
    first = min([checks[0][0]] + runs)
    expected = {}
    day = max(first.date(), since.date())
    while day <= now.date():
        start = max(first, datetime.combine(day, datetime.min.time(), UTC))
        end = min(datetime.combine(day, datetime.min.time(), UTC) + timedelta(days=1), now - timedelta(seconds=interval))
        expected[day] = sum(1 for k in range(int(start.timestamp()) // interval, int(end.timestamp()) // interval + 2)
                            if start.timestamp() <= k * interval < end.timestamp())
        day += timedelta(days=1)
    rows = [(d.isoformat(), *days.get(d, [0, 0, 0]), max(0, expected[d] - sum(days.get(d, [0, 0, 0])[::2])))
            for d in sorted(set(days) | set(expected))]
    limit = timedelta(seconds=1.5 * interval)
    gaps = [(a, b, round((b - a).total_seconds() / interval) - 1, False) for a, b in zip(runs, runs[1:]) if b - a > limit]
    last = max([checks[-1][0]] + errors)
    stopped = [(last, now, int((now - last).total_seconds() // interval), True)] if now - last > limit else []
    return rows, gaps, stopped


@pytest.mark.parametrize("days", [1, 2, 3, 4])
def test_counts_and_gaps_agree_with_every_check_one_by_one(db, monkeypatch, days):
    """The report counts per segment of check times in SQL; counted one by one from every check
    time, the numbers are the same, whatever day the window starts (segments cut short here,
    7 check times, so that windows start inside segments and flipping versions overlap)."""
    monkeypatch.setattr(store, "SEGMENT_SIZE", 7)
    monkeypatch.setattr("shared.core.report.SHOWN_GAPS", 3)
    build_random_history(db)
    overlapping = db.run("""SELECT count(*) FROM scrape_seen a JOIN scrape_seen b ON a.content_id < b.content_id
                            JOIN scrape_contents ca ON ca.id = a.content_id JOIN scrape_contents cb ON cb.id = b.content_id
                            WHERE ca.target_id = cb.target_id AND a.seen_at[1] < b.seen_at[cardinality(b.seen_at)]
                              AND b.seen_at[1] < a.seen_at[cardinality(a.seen_at)]""")[0][0]
    assert overlapping > 10  # the case that takes segments apart check by check is there
    now = at(7, 0, 7)
    result = report.build(db, {("scrape", "flaky"): "10m", ("scrape", "hourly"): "1h"}, now=now, days=days)
    text = render.text(result)
    for target, interval in zip(result.items("scrape"), (600, 3600)):
        rows, gaps, stopped = reference(db, target.name, interval, result.since, now)
        assert [(d.day.isoformat(), d.checks, d.changes, d.errors, d.missed) for d in target.days] == rows
        assert [(g.start, g.end, g.missed, g.open) for g in target.gaps] == gaps[-3:] + stopped
        assert target.earlier_gaps == max(0, len(gaps) - 3)
        if target.earlier_gaps:
            assert f"  {target.earlier_gaps} earlier gaps in the window, not listed" in text
    if days > 1:  # the window of 04-07 alone has no check yet
        assert sum(d.changes for d in result.items("scrape")[0].days) > 20 and result.items("scrape")[0].earlier_gaps > 0


def test_a_window_starting_between_two_segments_of_one_content(db, monkeypatch):
    """B until 04-05 12:00, then A; A's check times fill segments of 8 exactly up to 23:50, so
    its first check of 04-06 opens a segment: no change (the check before it saw A too)."""
    monkeypatch.setattr(store, "SEGMENT_SIZE", 8)
    schema.ensure(db)
    for moment in every_10_minutes(at(5, 0, 0), at(6, 12, 0)):
        store.record_check(db, "t", "http://127.0.0.1/t", "B" if moment < at(5, 12, 0) else "A", moment)
    assert db.run("SELECT s.seen_at[cardinality(s.seen_at)] FROM scrape_seen s JOIN scrape_contents c"
                  " ON c.id = s.content_id WHERE c.body = 'A' AND s.segment = 8")[0][0] == at(5, 23, 50)
    [target] = report.build(db, {("scrape", "t"): "10m"}, now=at(6, 12, 5), days=1).items("scrape")
    assert [(d.day.isoformat(), d.checks, d.changes) for d in target.days] == [("2016-04-06", 72, 0)]
    [target] = report.build(db, {("scrape", "t"): "10m"}, now=at(6, 12, 5), days=2).items("scrape")
    assert [(d.day.isoformat(), d.checks, d.changes) for d in target.days] == [("2016-04-05", 144, 1),
                                                                               ("2016-04-06", 72, 0)]


def test_versions_and_their_diffs_are_bounded(db, monkeypatch):
    schema.ensure(db)
    page = "\n".join(f"line {i}" for i in range(200))
    for day in range(4, 10):  # a new version every day: each one rewrites a few lines more
        body = "\n".join(f"line {i} (day {day})" if i % (day - 2) == 0 else f"line {i}" for i in range(200))
        store.record_check(db, "agenda", "http://127.0.0.1/a", page if day == 4 else body, at(day, 12, 0))
    store.record_check(db, "agenda", "http://127.0.0.1/a", "x" * (scrape_report.VERSION_CHARS + 50), at(10, 12, 0))
    [target] = report.build(db, {}, now=at(10, 13, 0), days=7).items("scrape")
    assert target.contents == 7 and len(target.versions) == scrape_report.VERSIONS == 4
    newest, second = target.versions[:2]
    assert (newest.last_seen, newest.checks, newest.size) == (at(10, 12, 0), 1, scrape_report.VERSION_CHARS + 50)
    assert newest.truncated and not second.truncated
    assert second.first_seen == at(9, 12, 0) and second.diff_cut > 0 and len(second.diff) == scrape_report.DIFF_LINES
    assert second.diff[0].startswith("@@ ") and "+line 0 (day 9)" in second.diff and "-line 0 (day 8)" in second.diff
    assert all(len(line) <= scrape_report.DIFF_LINE_CHARS for line in newest.diff)  # one line of 32,000 characters, cut
    assert target.versions[-1].diff is not None  # the oldest shown is compared with the one before it too
    page = render.html(report.build(db, {}, now=at(10, 13, 0), days=7))
    assert "4 newest of 7 versions" in page and f"… {second.diff_cut} more lines" in page
    assert f"(on the first {scrape_report.VERSION_CHARS:,} characters)" in page


def test_summary_and_forecast(db, monkeypatch):
    monkeypatch.setenv("DB_PLAN_LIMIT_MB", "64")
    schema.ensure(db)
    empty = report.build(db, {}, now=at(7, 0, 5))
    assert empty.database.growth_per_day is None
    assert "growth: not enough history yet for a forecast (a day at least)" in render.text(empty)
    build_seed_like_history(db)
    for moment in every_10_minutes(at(6, 0, 0), at(6, 12, 0)):  # a target that stopped at 12:00
        store.record_check(db, "stopped", "http://127.0.0.1/s", "same", moment)
    store.record_check(db, "healthy", "http://127.0.0.1/h", "same", at(6, 23, 55))
    store.record_failure(db, "broken", "http://127.0.0.1/b", "HTTP 500", at(6, 23, 58))
    schedules = {("scrape", name): "10m" for name in ("agenda", "stopped", "healthy", "broken")}
    result = report.build(db, schedules, now=at(7, 0, 5), days=4)

    db_info = result.database
    # History began on 04-04 09:30: 2.6 days, all of it in the last 7; the tables' sizes, all new.
    assert db_info.growth_days == pytest.approx((at(7, 0, 5) - at(4, 9, 30)).total_seconds() / 86400)
    sizes = sum(db.run(f"SELECT pg_total_relation_size('{table}')")[0][0]
                for table in ("scrape_seen", "scrape_contents", "scrape_errors"))
    assert db_info.growth_per_day == pytest.approx(sizes / db_info.growth_days)
    assert db_info.days_left == pytest.approx((64 * 2**20 - db_info.size_bytes) / db_info.growth_per_day)
    lines = render.text(result).splitlines()
    assert f"  growth: {text.size(db_info.growth_per_day)} a day (over the last 2.6 days), " \
           f"{db_info.days_left:,.0f} days left before DB_PLAN_LIMIT_MB" in lines

    # Problems first, the worst first: failing, stopped, missed runs; then the healthy.
    assert lines[1:6] == [
        "",
        "Summary: 1 failing, 1 stopped, 1 missed, 1 ok",
        "  failing  scrape   broken: 1 failed check in a row: HTTP 500",
        "  stopped  scrape   stopped: no run since 2016-04-06 11:50 UTC: 73 runs missed",
        "  missed   scrape   agenda: 5 runs missed, 1 gap",
    ]
    assert lines[6] == ""  # then the targets, as before


def test_error_history_keeps_the_newest_failures(db, monkeypatch):
    schema.ensure(db)
    monkeypatch.setattr(store, "ERROR_HISTORY", 3)
    for minute in range(5):
        failed = store.record_failure(db, "t", "http://x/", f"error {minute}", at(4, 0, minute))
    assert (failed.previous_streak, failed.streak) == (4, 5)
    assert [r[0] for r in db.run("SELECT error FROM scrape_errors ORDER BY at")] == ["error 2", "error 3", "error 4"]


# --- refresh jobs ------------------------------------------------------------------------

def refresh_run(con, name, key, start, seconds=None, ok=True, error=None):
    """One refresh run through the history's own claim() and finish(); seconds=None leaves it running."""
    claim = refresh_history.claim(con, name, key, start, lease=900)
    assert claim.run_id is not None
    if seconds is not None:
        refresh_history.finish(con, claim.run_id, start + timedelta(seconds=seconds), ok,
                               "SQL API" if ok else None, 1 if ok else None, error)


def build_refresh_history(con):
    """A daily job, `bikeways`: 04-04 ok in 12 s; 04-05 failed, then its retry (same key) ok in
    20 s; no run on 04-06; 04-07 failed after 60 s and 04-08 after 5 s. And `manual`, not in the
    jobs file: 04-07 ok in 2 s, 04-08 still running."""
    schema.ensure(con)
    refresh_run(con, "bikeways", "d4", at(4, 4, 0), 12)
    refresh_run(con, "bikeways", "d5", at(5, 4, 0), 30, ok=False, error="HTTP 500")
    refresh_run(con, "bikeways", "d5", at(5, 4, 10), 20)
    refresh_run(con, "bikeways", "d7", at(7, 4, 0), 60, ok=False, error="timed out")
    refresh_run(con, "bikeways", "d8", at(8, 4, 0), 5, ok=False, error="syntax error")
    refresh_run(con, "manual", None, at(7, 10, 0), 2)
    refresh_run(con, "manual", None, at(8, 10, 0))


def test_refresh_runs_failures_missed_runs_and_durations_per_day(db):
    build_refresh_history(db)
    result = report.build(db, {("refresh", "bikeways"): "1d"}, now=at(8, 12, 0), days=5)
    assert result.items("scrape") == []
    bikeways, manual = result.items("refresh")
    days = [(d.day.isoformat(), d.runs, d.errors, d.missed, d.median_seconds, d.longest_seconds)
            for d in bikeways.days]
    assert days == [
        ("2016-04-04", 1, 0, 0, 12, 12),
        ("2016-04-05", 1, 0, 0, 20, 20),  # the failed run and its retry are one run
        ("2016-04-06", 0, 0, 1, None, None),
        ("2016-04-07", 1, 1, 0, 60, 60),
        ("2016-04-08", 1, 1, 0, 5, 5),  # the 04-08 slot counts from 04-09 on
    ]
    assert (bikeways.median_seconds, bikeways.longest_seconds, bikeways.missed) == (16, 60, 1)
    assert (bikeways.last_ok, bikeways.error_streak, bikeways.runs_total) == (at(5, 4, 10) + timedelta(seconds=20), 2, 4)
    assert (bikeways.last_run.started_at, bikeways.last_run.outcome, bikeways.last_run.seconds) == (at(8, 4, 0), "error", 5)
    assert (bikeways.last_error, bikeways.last_error_at) == ("syntax error", at(8, 4, 0) + timedelta(seconds=5))
    assert [(g.start, g.end, g.missed, g.open) for g in bikeways.gaps] == [(at(5, 4, 10), at(7, 4, 0), 1, False)]

    # Not in the jobs file: no missed runs, no gaps; a run still going has no duration yet.
    assert [(d.day.isoformat(), d.runs, d.missed, d.median_seconds) for d in manual.days] == \
        [("2016-04-07", 1, None, 2), ("2016-04-08", 1, None, None)]
    assert (manual.last_run.outcome, manual.last_run.seconds, manual.gaps, manual.missed) == ("running", None, [], 0)
    # A cron job has no `every`: the same.
    cron = report.build(db, {("refresh", "bikeways"): None}, now=at(8, 12, 0), days=5).items("refresh")[0]
    assert [d.missed for d in cron.days] == [None] * 4 and cron.gaps == []  # and no row for 04-06

    text = render.text(result)
    assert "\n\nbikeways  refresh job  every 1d\n" in text and "\n\nmanual  refresh job  schedule unknown\n" in text
    lines = text.splitlines()
    assert lines[lines.index("bikeways  refresh job  every 1d") + 1:][:12] == [
        "  last run 2016-04-08 04:00 UTC: failed after 5.0 s; last success 2016-04-05 04:10 UTC, failure streak 2",
        "  last error 2016-04-08 04:00 UTC: syntax error",
        "  4 runs in all",
        "  day          runs failed missed     median    longest",
        "  2016-04-04      1      0      0     12.0 s     12.0 s",
        "  2016-04-05      1      0      0     20.0 s     20.0 s",
        "  2016-04-06      0      0      1",
        "  2016-04-07      1      1      0 1 min 00 s 1 min 00 s",
        "  2016-04-08      1      1      0      5.0 s      5.0 s",
        "  Total:          4      2      1     16.0 s 1 min 00 s",
        "  gap 2016-04-05 04:10 UTC to 2016-04-07 04:00 UTC: 1 run missed",
        "",
    ]
    assert "  last run 2016-04-08 10:00 UTC: still running; last success 2016-04-07 10:00 UTC, failure streak 0" in lines
    assert "  2016-04-08      1      0" in lines  # unscheduled, still running: no missed count, no duration
    assert "rows: scrape_targets 0, scrape_contents 0, scrape_seen 0, scrape_errors 0, refresh_jobs 2, refresh_runs 6" in text


def test_a_stopped_refresh_job_shows_as_an_open_gap(db):
    build_refresh_history(db)
    result = report.build(db, {("refresh", "bikeways"): "1d"}, now=at(11, 12, 0), days=3)
    bikeways = next(job for job in result.items("refresh") if job.name == "bikeways")
    assert [(d.day.isoformat(), d.runs, d.missed) for d in bikeways.days] == \
        [("2016-04-09", 0, 1), ("2016-04-10", 0, 1), ("2016-04-11", 0, 0)]  # 04-11's run may still come
    assert not any(map(any, bikeways.timeline.series.values()))  # no run in the window's buckets
    assert bikeways.last_run.started_at == at(8, 4, 0)  # before the window
    assert [(g.start, g.missed, g.open) for g in bikeways.gaps] == [(at(8, 4, 0), 3, True)]
    text = render.text(result)
    assert "  no run since 2016-04-08 04:00 UTC: 3 runs missed" in text
    assert "  Total:          0      0      2" in text.splitlines()


@pytest.fixture
def page(httpserver):
    state = {"items": "<li>one</li>", "status": 200}
    httpserver.expect_request("/p").respond_with_handler(
        lambda request: Response(f"<ul id=l>{state['items']}</ul><p>token {id(request)}</p>",
                                 status=state["status"], content_type="text/html"))
    state["url"] = httpserver.url_for("/p")
    return state


def test_report_of_real_checks(database_url, db, page, tmp_path, monkeypatch, capsys):
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[[scrape]]\nname = "list"\nurl = "{page["url"]}"\nselect = "#l"\n\n'
                    f'[[scrape]]\nname = "raw"\nurl = "{page["url"]}"\nevery = "1h"\n')
    monkeypatch.setenv("JOBS_FILE", str(jobs))
    monkeypatch.setenv("DB_PLAN_LIMIT_MB", "512")
    for change in (None, None, "<li>one</li><li>two</li>", None):
        if change:
            page["items"] = change
        assert scrape_fn.main([]) == 0
    page["status"] = 500
    scrape_fn.main(["--job", "list"])
    scrape_fn.main(["--job", "list"])
    capsys.readouterr()

    html_file = tmp_path / "report.html"
    assert report_fn.main(["--html", str(html_file)]) == 0
    out = capsys.readouterr().out
    today = datetime.now(UTC).date().isoformat()
    sections = out.split("\n\n")
    listing = next(s for s in sections if s.startswith("list "))
    raw = next(s for s in sections if s.startswith("raw "))
    assert "every 10m" in listing.splitlines()[0] and "every 1h" in raw.splitlines()[0]
    assert "error streak 2" in listing and "last error " in listing and "HTTP 500 INTERNAL SERVER ERROR" in listing
    assert f"  {today}      4       1      2      0" in listing.splitlines()
    assert f"  {today}      4       3      0      0" in raw.splitlines()  # the token changes each time
    assert "4 checks in all, 2 distinct contents" in listing
    size = db.run("SELECT pg_database_size(current_database())")[0][0]
    assert f"of 512.0 MB ({100 * size / (512 * 1024 * 1024):.1f}% of the plan limit" in out
    assert "rows: scrape_targets 2, scrape_contents 6, scrape_seen 6, scrape_errors 2" in out
    assert "8 checks recorded" in out
    assert html_file.read_text().count('<section class="target') == 2


def test_report_shows_refresh_jobs_of_the_jobs_file(database_url, db, tmp_path, monkeypatch, capsys):
    jobs = tmp_path / "jobs.toml"
    jobs.write_text('[[refresh]]\nname = "nightly"\nmode = "postgres"\nsql = "SELECT 1"\nevery = "1d"\n\n'
                    '[[refresh]]\nname = "broken"\nmode = "postgres"\nsql = "SELECT no_such_function()"\n')
    monkeypatch.setenv("JOBS_FILE", str(jobs))
    schema.ensure(db)
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    refresh_run(db, "nightly", "earlier", two_days_ago, 3)  # then yesterday's run did not happen
    assert refresh_fn.main(["--run-key", "today"]) == 1  # real runs on PostgreSQL: nightly ok, broken failed
    capsys.readouterr()

    html_file = tmp_path / "report.html"
    assert report_fn.main(["--html", str(html_file)]) == 0
    out = capsys.readouterr().out
    now = datetime.now(UTC)
    sections = out.split("\n\n")
    nightly = next(s for s in sections if s.startswith("nightly ")).splitlines()
    broken = next(s for s in sections if s.startswith("broken ")).splitlines()
    assert nightly[0] == "nightly  refresh job  every 1d"
    assert re.fullmatch(rf"  last run {now:%Y-%m-%d} ..:.. UTC: succeeded in \d+\.\d s; "
                        rf"last success {now:%Y-%m-%d} ..:.. UTC, failure streak 0", nightly[1])
    assert "  2 runs in all" in nightly
    assert f"  {(now - timedelta(days=1)).date()}      0      0      1" in nightly  # the missed run
    assert any(line.startswith(f"  {now.date()}      1      0      0 ") for line in nightly)
    assert any(line.startswith("  Total:          2      0      1 ") for line in nightly)
    assert any(line.startswith(f"  gap {two_days_ago:%Y-%m-%d %H:%M} UTC to ") and line.endswith(": 1 run missed")
               for line in nightly)
    assert broken[0] == "broken  refresh job  every 1d"  # a refresh job's default schedule
    assert broken[1].endswith("last success never, failure streak 1") and ": failed after " in broken[1]
    assert any("no_such_function" in line for line in broken if line.startswith("  last error "))
    assert any(line.startswith(f"  {now.date()}      1      1      0 ") for line in broken)
    assert "refresh_jobs 2, refresh_runs 3" in out
    page = html_file.read_text()
    assert page.count('<section class="refresh') == 2 and page.count('<section class="target') == 0
    assert 'data-refresh="nightly"' in page and 'data-refresh="broken"' in page


def test_report_usage_errors(database_url, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("DB_PLAN_LIMIT_MB", "lots")
    assert report_fn.main([]) == 2
    assert "DB_PLAN_LIMIT_MB must be a number of megabytes from 1 to" in capsys.readouterr().err
    for absurd in ("0", "-5", "inf", "nan", "1e300"):
        monkeypatch.setenv("DB_PLAN_LIMIT_MB", absurd)
        assert report_fn.main([]) == 2 and f"not '{absurd}'" in capsys.readouterr().err
    monkeypatch.delenv("DB_PLAN_LIMIT_MB")
    for days in ("0", "-1", "100000000"):
        assert report_fn.main(["--days", days]) == 2
        assert capsys.readouterr().err == f"error: --days must be from 1 to 3660, not {days}\n"
    (tmp_path / "locked").mkdir(mode=0o500)
    for path, why in ((tmp_path, "is a folder, not a file"), (tmp_path / "nowhere" / "r.html", "no folder"),
                      (tmp_path / "locked" / "r.html", "not writable")):
        if why == "not writable" and os.geteuid() == 0:
            continue  # root writes anywhere
        assert report_fn.main(["--html", str(path)]) == 2
        assert capsys.readouterr().err == f"error: --html {path}: {why}" + (f" {path.parent}" if why == "no folder" else "") + "\n"
    assert report_fn.main([]) == 0
    out = capsys.readouterr().out
    assert "No jobs file at" in out and "of 1.0 GB" in out
    assert report_fn.main(["--html", "-"]) == 0  # the page alone, on stdout
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>") and "No jobs file at" in page and "HTML report written" not in page


# --- the HTML page in a real browser -----------------------------------------------------

def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render_in_chromium(path, tmp_path, *options: str) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and every console message, from headless Chromium."""
    profile = tmp_path / "chromium-profile"
    done = subprocess.run(
        [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *options, "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def with_script(page, tmp_path, name: str, script: str):
    """A copy of the page with `script` run after the page's own."""
    path = tmp_path / name
    path.write_text(page.read_text().replace("</body>", f"<script>{script}</script></body>"))
    return path


def timeline_counts(section: str) -> dict[str, int]:
    """The totals of a section's timeline, from its SVG's data-l (labels) and data-v (per column)."""
    svg = re.search(r'<svg [^>]*data-l="([^"]*)" data-v="([^"]*)"', section)
    labels, columns = svg.group(1).split(","), svg.group(2).split(";")
    totals = dict.fromkeys(labels, 0)
    for column in columns:
        for label, count in zip(labels, column.split(",")):
            totals[label] += int(count or 0)
    return totals | {"columns": len(columns)}


@pytest.mark.skipif(find_chromium() is None, reason="Chromium not found: install Debian's `chromium` package")
def test_html_page_renders_in_chromium_without_console_errors(db, tmp_path):
    build_seed_like_history(db)
    for moment in every_10_minutes(at(5, 0, 0), at(6, 12, 0)):  # a second target, failing at the end
        if moment < at(6, 11, 0):
            store.record_check(db, "minutes & <notes>", "http://127.0.0.1/m?a=1&b=2", "same", moment)
        else:
            store.record_failure(db, "minutes & <notes>", "http://127.0.0.1/m?a=1&b=2", "timed out", moment)
    # Refresh jobs: one failing since 04-05, one healthy (daily at 04:00, none due yet on 04-07).
    refresh_run(db, "nightly <sql>", "d4", at(4, 4, 0), 12)
    refresh_run(db, "nightly <sql>", "d5", at(5, 4, 0), 30, ok=False, error="HTTP 500 & <oops>")
    refresh_run(db, "nightly <sql>", "d6", at(6, 4, 0), 95, ok=False, error="HTTP 500 & <oops>")
    for day in (4, 5, 6):
        refresh_run(db, "healthy", f"d{day}", at(day, 4, 0), 2)
    schedules = {("scrape", "agenda"): "10m", ("scrape", "minutes & <notes>"): "10m",
                 ("refresh", "nightly <sql>"): "1d", ("refresh", "healthy"): "1d"}
    result = report.build(db, schedules, now=at(7, 0, 5), days=4)
    page = tmp_path / "report.html"
    page.write_text(render.html(result), encoding="utf-8")
    assert "http://" not in re.sub(r'href="[^"]*"|>http://[^<]*<', "", page.read_text())  # loads nothing

    # The check can fail: a page with a script error is caught by the same means.
    broken = tmp_path / "broken.html"
    broken.write_text("<p>x</p><script>notDefined()</script>")
    assert any("notDefined" in line for line in render_in_chromium(broken, tmp_path)[1])

    dom, console = render_in_chromium(page, tmp_path)
    assert console == []
    assert 'data-ready="yes"' in dom  # the page's script ran to its end
    for name in ("agenda", "minutes &amp; &lt;notes&gt;"):
        section = re.search(rf'<section class="target[^"]*" id="target\d+" data-target="{re.escape(name)}">(.*?)</section>',
                            dom, re.S)
        assert section, f"no section for {name}"
        assert "<svg" in section.group(1)
    # The timeline draws buckets (30 minutes for 4 days), not checks: per column, its counts.
    agenda = re.search(r'data-target="agenda">(.*?)</section>', dom, re.S).group(1)
    assert timeline_counts(agenda) == {"checks": 368, "changes": 4, "failed": 2, "missed": 5, "columns": 3 * 48 + 1}
    assert re.search(r'<path class="changes" d="([^"]*)"', agenda).group(1).count("M") == 4  # 4 columns with a change
    assert '<path class="errors"' in agenda and '<path class="checks"' in agenda and '<path class="missed"' in agenda
    assert re.search(r'<path class="gaps" d="([^"]*)"', agenda).group(1).count("M") == 1  # the gap, shaded
    assert "gap 2016-04-06 02:50 UTC to 2016-04-06 03:50 UTC: 5 runs missed" in agenda
    # Its versions, newest first (by last check), each with its diff against the one before.
    assert "4 newest of 4 versions" in agenda and agenda.count("diff against the version before") == 3
    assert re.search(r'<span class="d">-v2</span>\s*<span class="a">\+v4</span>', agenda)
    minutes = re.search(r'data-target="minutes.*?">(.*?)</section>', dom, re.S).group(1)
    assert "6 failed checks in a row: timed out" in minutes and 'class="gaps"' in minutes  # stopped at 12:00
    assert "1 newest of 1 version" in minutes and "the oldest version kept" in minutes

    nightly = re.search(r'<section class="refresh" id="refresh\d+" data-refresh="nightly &lt;sql&gt;">(.*?)</section>',
                        dom, re.S)
    assert nightly, "no section for the failing refresh job"
    nightly = nightly.group(1)
    assert "<svg" in nightly and timeline_counts(nightly) == {"succeeded": 1, "failed": 2, "running": 0, "missed": 0,
                                                              "columns": 3 * 48 + 1}
    assert "2 failed runs in a row: HTTP 500 &amp; &lt;oops&gt;" in nightly
    assert "last success 2016-04-04 04:00 UTC" in nightly and "failed after 1 min 35 s" in nightly
    assert "3 runs, 2 failed, 0 missed; median 30.0 s, longest 1 min 35 s" in nightly
    assert "<td>2016-04-06</td><td>1</td><td>1</td><td>0</td><td>1 min 35 s</td><td>1 min 35 s</td>" in nightly
    healthy = re.search(r'<section class="refresh healthy" id="refresh\d+" data-refresh="healthy">(.*?)</section>', dom, re.S)
    assert healthy and timeline_counts(healthy.group(1))["succeeded"] == 3

    # The summary on top: what is failing first, then what missed runs, then the healthy.
    summary = re.search(r'<section id="summary">(.*?)</section>', dom, re.S).group(1)
    assert "Summary: 2 failing, 1 missed, 1 ok" in summary
    assert re.findall(r'<tr class="(\w+)"><td class="state \w+">\w+</td><td><a href="#(\w+)">([^<]*)</a>', summary) == [
        ("failing", "target1", "minutes &amp; &lt;notes&gt;"), ("failing", "refresh1", "nightly &lt;sql&gt;"),
        ("missed", "target0", "agenda"), ("ok", "refresh0", "healthy")]

    # "Only problems" hides the healthy refresh job, and only it (every target here has a problem).
    clicked = with_script(page, tmp_path, "clicked.html", """
document.getElementById("problems-only").click();
document.body.dataset.hidden = [...document.querySelectorAll("section")]
  .filter(s => getComputedStyle(s).display === "none").map(s => s.dataset.target || s.dataset.refresh).join("|");""")
    dom, console = render_in_chromium(clicked, tmp_path)
    assert console == [] and 'data-hidden="healthy"' in dom

    # Hovering (or tapping) a column of the timeline tells its counts: 04-06 08:00, two failures.
    hovered = with_script(page, tmp_path, "hovered.html", """
const svg = document.querySelector('section[data-target="agenda"] svg'), box = svg.getBoundingClientRect();
const column = (2 * 48 + 16 + 0.5) / (3 * 48 + 1);
svg.dispatchEvent(new PointerEvent("pointermove", {clientX: box.left + column * box.width, clientY: box.top + 5}));
document.body.dataset.tip = document.getElementById("tip").textContent;""")
    dom, console = render_in_chromium(hovered, tmp_path)
    assert console == []
    assert 'data-tip="2016-04-06 08:00 to 2016-04-06 08:30 UTC: 1 checks, 0 changes, 2 failed, 0 missed"' in dom

    # On a phone's screen (390 pixels wide) nothing is wider than the screen: no sideways scrolling.
    # Headless Chromium's window is 500 pixels wide at least, so the page goes into a frame of 390.
    measure = """const root = document.documentElement;
document.body.dataset.widths = [innerWidth, root.clientWidth, root.scrollWidth,
  Math.round(document.querySelector("svg").getBoundingClientRect().width)].join(" ");"""
    phone = tmp_path / "phone.html"
    phone.write_text(f'<body style="margin:0"><iframe style="border:0" width="390" height="844" '
                     f'onload="document.body.dataset.widths = this.contentDocument.body.dataset.widths" '
                     f'srcdoc="{html.escape(with_script(page, tmp_path, "measured.html", measure).read_text())}">'
                     f'</iframe></body>')
    dom, console = render_in_chromium(phone, tmp_path)
    window, width, page_width, svg_width = map(int, re.search(r'data-widths="([^"]*)"', dom).group(1).split())
    assert console == [] and window == 390 and page_width == width and width - 40 < svg_width < width


def test_the_report_never_links_a_script(database_url, db):
    from shared.app import schema

    schema.ensure(db)
    db.run("INSERT INTO scrape_targets (name, url, last_ok_at) VALUES ('x', 'javascript:alert(1)', now())")
    done = command("functions.report", "--html", "-")
    assert done.returncode == 0 and "javascript:alert(1)" in done.stdout
    assert 'href="javascript' not in done.stdout.lower()


def test_an_empty_html_path_is_a_usage_error(database_url):
    done = command("functions.report", "--html", "")
    assert done.returncode == 2 and done.stderr.startswith("error: --html") and "Traceback" not in done.stderr


def test_an_sql_error_while_reading_the_report_is_one_line(database_url, db):
    """History a former version adopted (a NULL check time in a segment): one line, exit 1."""
    from shared.app import schema

    schema.ensure(db)
    target = db.run("INSERT INTO scrape_targets (name, url, last_ok_at) VALUES ('x', 'https://e.org', now())"
                    " RETURNING id")[0][0]
    content = db.run("INSERT INTO scrape_contents (target_id, hash, body, checks, first_seen, last_seen)"
                     " VALUES (:t, '\\x01', 'b', 2, now(), now()) RETURNING id", t=target)[0][0]
    db.run("INSERT INTO scrape_seen VALUES (:c, 0, ARRAY[now() - interval '1 hour', NULL, now()])", c=content)
    done = command("functions.report")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: reading the report: ") and "(SQLSTATE 22004)" in done.stderr
    assert done.stderr.count("\n") == 1
