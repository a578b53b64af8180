"""`python -m functions.history`: list, show, diff, test, delete, prune, on real PostgreSQL
(histories built through the storage API with explicit times, since a test cannot wait days)
and real loopback pages."""

import re
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from functions import history as history_fn
from functions import scrape as scrape_fn
from shared.app import config, schema
from shared.refresh import store as refresh_history
from shared.scrape import store
from tests import runs

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def hist(capsys, *args: str) -> tuple[int, str, str]:
    code = history_fn.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def record(con, name: str, bodies: list[str], start: datetime = T0, step=timedelta(hours=1)) -> list[datetime]:
    times = [start + i * step for i in range(len(bodies))]
    for body, at in zip(bodies, times):
        store.record_check(con, name, f"http://127.0.0.1:9/{name}", body, at)
    return times


def changes_by_hand(con, name: str) -> int:
    """Checks whose content differs from the check before, read from the seed-shaped view."""
    rows = con.run("SELECT id, ts FROM scraps, unnest(seen_at) ts WHERE target = :n ORDER BY ts", n=name)
    return sum(1 for before, after in zip(rows, rows[1:]) if before[0] != after[0])


@pytest.fixture
def histories(db):
    """`agenda`: three versions one after another; `flip`: a page flipping between two contents
    (and failing now); `quiet`: one version; and a refresh job with two runs."""
    schema.ensure(db)
    record(db, "agenda", ["a\nb\nc\n"] * 3 + ["a\nB\nc\n"] * 2 + ["a\nB\nc\nd\n"] * 4)
    record(db, "flip", ["x", "y", "x", "x", "y", "x"])
    store.record_failure(db, "flip", "http://127.0.0.1:9/flip", "HTTP 503 Service Unavailable",
                           T0 + timedelta(hours=7))
    record(db, "quiet", ["same"] * 2)
    for n, ok in enumerate((True, False)):
        claim = refresh_history.claim(db, "bikeways", f"k{n}", T0 + timedelta(days=n), 600)
        refresh_history.finish(db, claim.run_id, T0 + timedelta(days=n, seconds=5), ok, "SQL API", 1,
                               None if ok else "HTTP 400: boom")
    return db


def test_list_shows_every_target_and_refresh_job(database_url, histories, capsys):
    code, out, err = hist(capsys, "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["kind", "name", "checks", "changes", "first check (UTC)",
                                             "last check (UTC)", "failing", "stored"]
    rows = {re.split(r"\s{2,}", line)[1]: re.split(r"\s{2,}", line) for line in lines[1:-1]}
    assert rows["agenda"][:7] == ["scrape", "agenda", "9", "2", "2026-03-01 08:00", "2026-03-01 16:00", "0"]
    # Interleaved versions are counted check by check: x y x x y x is 4 changes, not 1.
    assert changes_by_hand(histories, "flip") == 4
    assert rows["flip"][:7] == ["scrape", "flip", "6", "4", "2026-03-01 08:00", "2026-03-01 15:00", "1"]
    assert rows["quiet"][2:4] == ["2", "0"]
    assert rows["bikeways"][:7] == ["refresh", "bikeways", "2", "-", "2026-03-01 08:00", "2026-03-02 08:00", "1"]
    assert all(re.fullmatch(r"\d+ B|\d+\.\d kB", row[7]) for row in rows.values())
    assert re.fullmatch(r"4 jobs, \d+(\.\d)? k?B stored", lines[-1]), lines[-1]


def test_show_lists_versions_newest_first_and_prints_one(database_url, histories, capsys):
    code, out, _ = hist(capsys, "show", "agenda")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "agenda: http://127.0.0.1:9/agenda"
    assert lines[1] == "3 versions, 9 checks, from 2026-03-01 08:00:00 to 2026-03-01 16:00:00 UTC"
    table = [re.split(r"\s{2,}", line.strip()) for line in lines[2:]]
    assert table[0][:4] == ["version", "first seen (UTC)", "last seen (UTC)", "checks"]
    assert [row[0] for row in table[1:]] == ["3", "2", "1"]
    assert table[1][1:4] == ["2026-03-01 13:00:00", "2026-03-01 16:00:00", "4"] and table[1][-1] == "current"
    assert table[3][1:4] == ["2026-03-01 08:00:00", "2026-03-01 10:00:00", "3"]
    assert hist(capsys, "show", "agenda", "2")[:2] == (0, "a\nB\nc\n\n")
    code, out, _ = hist(capsys, "show", "flip")
    assert "failing: 1 failed check in a row, the last at 2026-03-01 15:00:00 UTC: HTTP 503 Service Unavailable" in out


def test_diff_defaults_to_the_last_change(database_url, histories, capsys):
    code, out, _ = hist(capsys, "diff", "agenda")
    assert code == 0
    assert out.splitlines() == [
        "--- agenda version 2 (first seen 2026-03-01 11:00:00, last seen 2026-03-01 12:00:00 UTC, 2 checks)",
        "+++ agenda version 3 (first seen 2026-03-01 13:00:00, last seen 2026-03-01 16:00:00 UTC, 4 checks)",
        "@@ -1,3 +1,4 @@", " a", " B", " c", "+d"]
    code, out, _ = hist(capsys, "diff", "agenda", "1", "2")
    assert out.splitlines()[2:] == ["@@ -1,3 +1,3 @@", " a", "-b", "+B", " c"]
    code, out, _ = hist(capsys, "diff", "agenda", "1")  # to the current version
    assert out.splitlines()[1].startswith("+++ agenda version 3") and "+d" in out.splitlines()
    # A page that flipped back: the last change is from y to x, the current one.
    code, out, _ = hist(capsys, "diff", "flip")
    assert out.splitlines()[2:] == ["@@ -1 +1 @@", "-y", "+x"]


def test_diff_of_a_long_page_numbers_its_hunks_from_the_top(database_url, db, capsys):
    schema.ensure(db)
    page = [f"line {n}" for n in range(1, 1001)]
    edited = page[:499] + ["line 500 edited"] + page[500:]
    record(db, "long", ["\n".join(page), "\n".join(edited)])
    code, out, _ = hist(capsys, "diff", "long")
    assert out.splitlines()[2:] == ["@@ -497,7 +497,7 @@", " line 497", " line 498", " line 499", "-line 500",
                                    "+line 500 edited", " line 501", " line 502", " line 503"]


@pytest.mark.parametrize("args, message", [
    (("show", "nope"), "error: no target named 'nope' in the history (known: agenda, flip, quiet)"),
    (("show", "agenda", "4"), "error: agenda has versions 1 to 3, not 4"),
    (("diff", "agenda", "0", "2"), "error: agenda has versions 1 to 3, not 0"),
    (("diff", "agenda", "2", "2"), "error: version 2 compared with itself: give two versions"),
    (("diff", "quiet"), "error: quiet has 1 version: nothing to diff"),
    (("diff", "nope"), "error: no target named 'nope' in the history (known: agenda, flip, quiet)"),
    (("delete", "agenda"), "error: delete agenda drops the scrape job's whole history (3 versions, 9 check times,"
                           " 0 failed checks, "),
    (("delete", "nope", "--yes"), "error: no job named 'nope' in the history"),
    (("delete", "agenda", "--kind", "refresh", "--yes"), "error: no refresh job named 'agenda' in the history"),
    (("prune", "--keep-days", "0"), "error: --keep-days must be from 1 to 36500, not 0"),
    (("prune", "--keep-days", "99999999"), "error: --keep-days must be from 1 to 36500, not 99999999"),
    (("prune", "--keep-days", "3", "--job", "nope"), "error: no target named 'nope' in the history"),
])
def test_bad_input_is_one_line_and_exit_2(database_url, histories, capsys, args, message):
    before = histories.run("SELECT count(*), sum(checks) FROM scrape_contents")
    code, out, err = hist(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1, err
    assert histories.run("SELECT count(*), sum(checks) FROM scrape_contents") == before


@pytest.mark.parametrize("args, message", [
    ((), "error: the following arguments are required: COMMAND (see --help)"),
    (("show",), "error: the following arguments are required: name (see --help)"),
    (("show", "agenda", "two"), "error: argument version: invalid int value: 'two' (see --help)"),
    (("diff", "agenda", "1", "2", "3"), "error: unrecognized arguments: 3 (see --help)"),
    (("prune", "--keep-days", "x"), "error: argument --keep-days: invalid int value: 'x' (see --help)"),
    (("frobnicate",), "error: argument COMMAND: invalid choice: 'frobnicate'"),
    (("show", "agen\udcffda"), "error: NAME holds a NUL or an unpaired surrogate (see --help)"),
    (("delete", "\udcff", "--yes"), "error: NAME holds a NUL or an unpaired surrogate (see --help)"),
    (("prune", "--keep-days", "3", "--job", "a\udcff"), "error: --job holds a NUL or an unpaired surrogate"),
])
def test_argument_errors_are_one_line_and_exit_2_before_anything_is_read(args, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        history_fn.main(list(args))
    out, err = capsys.readouterr()
    assert (stopped.value.code, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1, err


def test_an_undecodable_name_from_a_real_command_line_is_one_line(database_url):
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable.encode(), b"-m", b"functions.history", b"show", b"caf\xe9"],
                          capture_output=True, timeout=60, env={**os.environ, "LC_ALL": "C.UTF-8"},
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr == b"error: NAME holds a NUL or an unpaired surrogate (see --help)\n"


def test_delete_drops_one_history_and_nothing_else(database_url, histories, capsys):
    code, out, _ = hist(capsys, "delete", "agenda", "--yes")
    assert code == 0
    assert re.fullmatch(r"deleted the scrape job agenda: 3 versions, 9 check times, 0 failed checks, \d+ B; a job of"
                        r" that name in the jobs file starts a new history at its next run\n", out), out
    assert histories.run("SELECT DISTINCT target FROM scraps ORDER BY 1") == [["flip"], ["quiet"]]
    assert histories.run("SELECT count(*) FROM scrape_seen s LEFT JOIN scrape_contents c ON c.id = s.content_id"
                         " WHERE c.id IS NULL")[0][0] == 0
    code, out, _ = hist(capsys, "delete", "bikeways", "--yes")
    assert code == 0 and out.startswith("deleted the refresh job bikeways: 2 runs, ")
    assert histories.run("SELECT count(*) FROM refresh_runs")[0][0] == 0


def test_a_name_two_kinds_share_is_deleted_only_with_its_kind(database_url, histories, capsys):
    store.record_check(histories, "bikeways", "http://127.0.0.1/b", "a page", datetime(2026, 3, 1, tzinfo=timezone.utc))
    code, out, err = hist(capsys, "delete", "bikeways", "--yes")
    assert (code, out) == (2, "") and err == ("error: bikeways is a job of scrape and of refresh: say which with"
                                              " --kind scrape or --kind refresh\n")
    code, out, _ = hist(capsys, "delete", "bikeways", "--kind", "refresh", "--yes")
    assert code == 0 and out.startswith("deleted the refresh job bikeways: 2 runs, ")
    assert histories.run("SELECT count(*) FROM scrape_targets WHERE name = 'bikeways'")[0][0] == 1


def test_prune_drops_old_versions_and_times_keeps_the_current_one_and_later_checks_still_fit(
        database_url, db, capsys):
    schema.ensure(db)
    now = datetime.now(UTC).replace(microsecond=0)
    # 10 days of hourly checks, on the half hour (no check near the cut-off, which the database
    # computes a moment after `now`): v1 for 5 days, v2 for 3, v1 again for 2 (v1 is current);
    # and a target whose only version is 10 days old.
    bodies = ["v1"] * 120 + ["v2"] * 72 + ["v1"] * 48
    times = record(db, "page", bodies, start=now - timedelta(hours=239, minutes=30))
    record(db, "old", ["only"] * 3, start=now - timedelta(days=10))
    store.record_failure(db, "page", "http://127.0.0.1:9/page", "timed out", now - timedelta(days=6))
    store.record_failure(db, "page", "http://127.0.0.1:9/page", "timed out", now - timedelta(hours=1))
    cutoff = now - timedelta(days=4)

    code, out, err = hist(capsys, "prune", "--keep-days", "4")
    assert (code, err) == (0, "")
    kept = [(at, body) for at, body in zip(times, bodies) if at >= cutoff]
    dropped_times = len(times) - len(kept) + 2
    match = re.fullmatch(r"pruned 2 of 2 targets to their last 4 days: 0 versions, (\d+) check times and 1 failed"
                         r" check dropped; (\d+) rows? and (\d+(\.\d)? k?B) freed\n", out)
    assert match, out
    assert int(match.group(1)) == dropped_times
    assert match.group(2) == "1"  # the error's: each content's times still fit one segment
    # v2 was last seen within the 4 days: it stays, with only its recent check times.
    rows = db.run("SELECT body, ts FROM scraps, unnest(seen_at) ts WHERE target = 'page' ORDER BY ts")
    assert [(ts, body) for body, ts in rows] == kept
    assert db.run("SELECT body, checks, first_seen FROM scrape_contents c JOIN scrape_targets t"
                  " ON t.id = c.target_id WHERE t.name = 'page' ORDER BY body") == [
        ["v1", 48, kept[-48][0]], ["v2", sum(1 for _, b in kept if b == "v2"), kept[0][0]]]
    # The old target keeps its current version, with its last check time.
    assert db.run("SELECT cardinality(seen_at), seen_at[1] FROM scraps WHERE target = 'old'") == \
        [[1, now - timedelta(days=10) + timedelta(hours=2)]]
    assert db.run("SELECT count(*) FROM scrape_errors")[0][0] == 1
    # Checks recorded after a prune go where RECORD_CHECKS expects: segments stay full but the last.
    later = record(db, "page", ["v1"] * 400, start=now + timedelta(minutes=1), step=timedelta(minutes=1))
    segments = db.run("SELECT s.segment, cardinality(s.seen_at) FROM scrape_seen s JOIN scrape_contents c"
                      " ON c.id = s.content_id WHERE c.body = 'v1' AND c.target_id = (SELECT id FROM scrape_targets"
                      " WHERE name = 'page') ORDER BY segment")
    assert segments == [[0, 200], [1, 200], [2, 48]]
    assert db.run("SELECT count(*) FROM scraps, unnest(seen_at) WHERE target = 'page' AND body = 'v1'")[0][0] \
        == 48 + len(later)
    # Nothing more to drop: a second prune frees nothing.
    assert hist(capsys, "prune", "--keep-days", "4", "--job", "page")[1].startswith(
        "pruned 0 of 1 target to their last 4 days: 0 versions, 0 check times and 0 failed checks dropped; 0 rows")


def test_prune_drops_versions_last_seen_before_the_cutoff(database_url, db):
    schema.ensure(db)
    now = datetime.now(UTC)
    record(db, "p", ["a", "b", "a", "c", "c"], start=now - timedelta(days=9), step=timedelta(days=2))
    pruned = store.prune(db, {"p": 4}, slack_days=0)
    # a (days -9, -5) and b (-7) are gone; c (-1, +1) is current.
    assert (pruned.targets, pruned.versions, pruned.check_times) == (1, 2, 3)
    assert pruned.rows == 4 and pruned.bytes > 0  # 2 contents, their 2 segments
    assert db.run("SELECT body, cardinality(seen_at) FROM scraps") == [["c", 2]]


def test_the_runs_prune_rewrites_check_times_only_past_its_slack(database_url, db):
    """store.prune as a run calls it (slack of a day): a version's old times are rewritten once
    the oldest is a day past the cut-off, not on every run; old versions go at once."""
    schema.ensure(db)
    now = datetime.now(UTC)
    # gone: 4 days 6 hours ago; kept: 3 days 18 hours ago, and every 12 hours since.
    record(db, "p", ["gone"] + ["kept"] * 5, start=now - timedelta(days=4, hours=6), step=timedelta(hours=12))
    first = store.prune(db, [("p", 4)])
    assert (first.versions, first.check_times) == (1, 1)
    # Keeping 3 days: kept's two oldest times are older, but less than a day past the cut-off.
    assert store.prune(db, [("p", 3)]) == store.Pruned()
    assert db.run("SELECT cardinality(seen_at) FROM scraps")[0][0] == 5
    # Keeping 2 days: its oldest is more than a day past the cut-off: all four older go.
    later = store.prune(db, [("p", 2)])
    assert (later.targets, later.versions, later.check_times, later.rows) == (1, 0, 4, 0)
    assert db.run("SELECT cardinality(seen_at) FROM scraps")[0][0] == 1


def test_keep_days_is_a_job_key_checked_like_the_others(tmp_path, monkeypatch):
    path = tmp_path / "jobs.toml"
    path.write_text('[[scrape]]\nname = "a"\nurl = "http://x/"\nkeep_days = 30\n\n'
                    '[[scrape]]\nname = "b"\nurl = "http://x/"\nkeep_days = 0\n')
    a, b = config.entries(path)
    assert config.build(a).keep_days == 30
    with pytest.raises(config.ConfigError, match=r"job 'b': key 'keep_days' must be from 1 to 36500 days, not 0"):
        config.build(b)


@pytest.fixture
def agenda(httpserver, tmp_path, monkeypatch):
    state = {"body": "<html><body><div id='a'>Item one <b>Generated in 5 ms</b></div><p>ad</p></body></html>",
             "status": 200}
    httpserver.expect_request("/agenda").respond_with_handler(
        lambda r: Response(state["body"], status=state["status"], content_type="text/html"))
    path = tmp_path / "jobs.toml"
    path.write_text(f'[[scrape]]\nname = "agenda"\nurl = "{httpserver.url_for("/agenda")}"\nselect = "#a"\n'
                    "ignore = ['Generated in \\d+ ms']\n")
    monkeypatch.setenv("JOBS_FILE", str(path))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    return state


def test_test_fetches_filters_and_diffs_but_stores_nothing(database_url, db, agenda, httpserver, capsys):
    code, out, _ = hist(capsys, "test", "agenda")
    assert code == 0
    assert out.splitlines() == [
        f"agenda: {httpserver.url_for('/agenda')}: 8 characters would be stored (filters: select, ignore,"
        " HTML -> text)", "", "Item one", "", "agenda has no stored version: the check would be new"]
    assert db.run("SELECT count(*) FROM scrape_targets")[0][0] == 0
    assert scrape_fn.main([]) == 0
    assert capsys.readouterr().out == "agenda: new\n"
    state = db.run("SELECT t.last_ok_at, c.checks FROM scrape_targets t JOIN scrape_contents c"
                   " ON c.id = t.last_content_id")
    code, out, _ = hist(capsys, "test", "agenda")
    assert out.splitlines()[-1] == "unchanged: the same as version 1, the current one"
    agenda["body"] = agenda["body"].replace("Item one", "Item two")
    code, out, _ = hist(capsys, "test", "agenda")
    assert code == 0
    lines = out.splitlines()
    assert lines[:6] == [lines[0], "", "Item two", "", "changed against version 1:", lines[5]]
    assert re.fullmatch(r"--- agenda version 1 \(current; first seen \S+ \S+, last seen \S+ \S+ UTC, 1 check\)", lines[5])
    assert lines[6:] == ["+++ agenda now", "@@ -1 +1 @@", "-Item one", "+Item two"]
    assert db.run("SELECT t.last_ok_at, c.checks FROM scrape_targets t JOIN scrape_contents c"
                  " ON c.id = t.last_content_id") == state  # stored nothing


def test_test_of_a_failing_page_or_an_unknown_job_is_one_line(database_url, agenda, capsys):
    agenda["status"] = 503
    code, out, err = hist(capsys, "test", "agenda")
    assert (code, out) == (1, "")
    assert err.startswith("error: agenda: http://") and err.endswith(": HTTP 503 SERVICE UNAVAILABLE\n"), err
    code, out, err = hist(capsys, "test", "minutes")
    assert (code, out) == (2, "")
    assert err.endswith("no [[scrape]] job named 'minutes' (known: agenda)\n")


def test_keep_days_is_applied_after_each_run(database_url, db, httpserver):
    from datetime import datetime, timedelta, timezone

    from shared.app import schema
    from shared.scrape import store
    from shared.scrape.job import ScrapeJob

    httpserver.expect_request("/p").respond_with_data("<p>new</p>", content_type="text/html")
    url = httpserver.url_for("/p")
    schema.ensure(db)
    now = datetime.now(timezone.utc)
    store.record_check(db, "p", url, "<p>old</p>", now - timedelta(days=100))
    store.record_check(db, "p", url, "<p>middle</p>", now - timedelta(days=50))
    (result,) = runs.scrape([ScrapeJob("p", url, keep_days=30)])
    assert result.outcome == "changed"
    assert db.run("SELECT body FROM scrape_contents ORDER BY id") == [["<p>new</p>"]]
    (result,) = runs.scrape([ScrapeJob("other", url)])  # no keep_days: nothing pruned
    assert db.run("SELECT count(*) FROM scrape_contents")[0][0] == 2


def test_a_delete_racing_a_check_answered_304_never_costs_that_check(database_url, db, httpserver, tmp_path,
                                                                      monkeypatch, capsys):
    """The run sent validators for the content it knew; `history delete` drops that content
    before the 304 comes back. The run fetches the page again and stores it as new."""
    seen = []

    def page(request):
        seen.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == '"v1"':
            assert history_fn.main(["delete", "agenda", "--yes"]) == 0  # meanwhile, by hand
            return Response(status=304, headers={"ETag": '"v1"'})
        return Response("<p>the agenda</p>", content_type="text/html", headers={"ETag": '"v1"'})

    httpserver.expect_request("/agenda").respond_with_handler(page)
    path = tmp_path / "jobs.toml"
    path.write_text(f'[[scrape]]\nname = "agenda"\nurl = "{httpserver.url_for("/agenda")}"\n')
    monkeypatch.setenv("JOBS_FILE", str(path))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    assert scrape_fn.main([]) == 0
    assert scrape_fn.main([]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["agenda: new", "deleted the scrape job agenda: 1 version, 1 check time, 0 failed"
                                " checks, " + out.splitlines()[1].split("failed checks, ")[1], "agenda: new"]
    assert seen == [None, '"v1"', None]
    assert db.run("SELECT body, cardinality(seen_at) FROM scraps") == [["<p>the agenda</p>", 1]]
