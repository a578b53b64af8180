"""The history report, checked against databases built by real checks.

Today's numbers come from real scrape runs against a loopback page; the per-day numbers
over past days (the seed's 87-144 checks a day, skipped runs, a change at midnight) from
storage calls with explicit check times, since a test cannot wait three days.
"""

import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from functions import report as report_fn
from functions import scrape as scrape_fn
from shared.report import history as report
from shared.platform import schema
from shared.scrape import run as scrape, storage
from tests.seed import BREAKDOWN as SEED_BREAKDOWN

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
            storage.record_failure(con, name, url, "HTTP 503 Service Unavailable", moment)
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
        storage.record_check(con, name, url, body, moment)


def test_per_day_checks_changes_errors_and_missed_runs(db):
    build_seed_like_history(db)
    now = at(7, 0, 5)
    result = report.build(db, {("scrape", "agenda"): "10m"}, now=now, days=4)
    [target] = result.targets
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

    lines = report.text(result).splitlines()
    assert "  2016-04-06    137       3      2      5" in lines
    assert "  Total:        368       4      2      5" in lines
    assert "  gap 2016-04-06 02:50 UTC to 2016-04-06 03:50 UTC: 5 runs missed" in lines


def test_a_stopped_watcher_shows_as_an_open_gap(db):
    build_seed_like_history(db)
    result = report.build(db, {("scrape", "agenda"): "10m"}, now=at(7, 6, 0), days=2)
    [target] = result.targets
    assert [d.missed for d in target.days] == [5, 36 - 1]  # 00:00-05:50 on 04-07 = 36 slots, 05:50 still due
    assert target.gaps[-1].open and target.gaps[-1].missed == 37
    assert "no run since 2016-04-06 23:50 UTC: 37 runs missed" in report.text(result)


def test_error_history_keeps_the_newest_failures(db, monkeypatch):
    schema.ensure(db)
    monkeypatch.setattr(storage, "ERROR_HISTORY", 3)
    for minute in range(5):
        failed = storage.record_failure(db, "t", "http://x/", f"error {minute}", at(4, 0, minute))
    assert (failed.previous_streak, failed.streak) == (4, 5)
    assert [r[0] for r in db.run("SELECT error FROM scrape_errors ORDER BY at")] == ["error 2", "error 3", "error 4"]


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


def test_report_usage_errors(database_url, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("DB_PLAN_LIMIT_MB", "lots")
    assert report_fn.main([]) == 2
    assert "DB_PLAN_LIMIT_MB must be a number of megabytes, not 'lots'" in capsys.readouterr().err
    monkeypatch.delenv("DB_PLAN_LIMIT_MB")
    assert report_fn.main([]) == 0
    out = capsys.readouterr().out
    assert "No jobs file at" in out and "of 1.0 GB" in out


# --- the HTML page in a real browser -----------------------------------------------------

def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render_in_chromium(path, tmp_path) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and every console message, from headless Chromium."""
    profile = tmp_path / "chromium-profile"
    done = subprocess.run(
        [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(find_chromium() is None, reason="Chromium not found: install Debian's `chromium` package")
def test_html_page_renders_in_chromium_without_console_errors(db, tmp_path):
    build_seed_like_history(db)
    for moment in every_10_minutes(at(5, 0, 0), at(6, 12, 0)):  # a second target, failing at the end
        if moment < at(6, 11, 0):
            storage.record_check(db, "minutes & <notes>", "http://127.0.0.1/m?a=1&b=2", "same", moment)
        else:
            storage.record_failure(db, "minutes & <notes>", "http://127.0.0.1/m?a=1&b=2", "timed out", moment)
    result = report.build(db, {("scrape", "agenda"): "10m", ("scrape", "minutes & <notes>"): "10m"}, now=at(7, 0, 5), days=4)
    page = tmp_path / "report.html"
    page.write_text(report.html(result), encoding="utf-8")
    assert "http://" not in re.sub(r'href="[^"]*"|>http://[^<]*<', "", page.read_text())  # loads nothing

    # The check can fail: a page with a script error is caught by the same means.
    broken = tmp_path / "broken.html"
    broken.write_text("<p>x</p><script>notDefined()</script>")
    assert any("notDefined" in line for line in render_in_chromium(broken, tmp_path)[1])

    dom, console = render_in_chromium(page, tmp_path)
    assert console == []
    assert 'data-ready="yes"' in dom  # the page's script ran to its end
    for name in ("agenda", "minutes &amp; &lt;notes&gt;"):
        section = re.search(rf'<section class="target[^"]*" data-target="{re.escape(name)}">(.*?)</section>',
                            dom, re.S)
        assert section, f"no section for {name}"
        assert "<svg" in section.group(1)
    agenda = re.search(r'data-target="agenda">(.*?)</section>', dom, re.S).group(1)
    assert agenda.count('class="change"') == 4 and agenda.count('class="error"') == 2
    assert agenda.count('class="check"') == 368 - 4 and agenda.count('class="gap"') == 1
    minutes = re.search(r'data-target="minutes.*?">(.*?)</section>', dom, re.S).group(1)
    assert "6 failed checks in a row: timed out" in minutes and 'class="gap"' in minutes  # stopped at 12:00
