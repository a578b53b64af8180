"""Adopting history kept elsewhere: the seed article's `scraps` table, made with its SQL
verbatim, and a cache urlwatch 2.29 itself wrote, on real PostgreSQL and loopback pages."""

import os
import re
import sqlite3
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from werkzeug import Response

from functions import migrate as migrate_fn
from functions import scrape as scrape_fn
from shared.app import schema
from shared.scrape import store
from tests.seed import BREAKDOWN

ROOT = Path(__file__).resolve().parent.parent

# The seed article's query, verbatim ("The query"): psql fills in :body and :ts.
SEED_QUERY = """
CREATE TABLE IF NOT EXISTS scraps (
    id serial PRIMARY KEY,
    hash bytea NOT NULL UNIQUE,
    body text NOT NULL,
    seen_at timestamptz[] NOT NULL
);

-- This extension yields the digest function that enables us to
-- hash the body and index it efficiently. Moreover, PostgreSQL
-- does not allow indexes on very large text columns. We expect to
-- store large HTML bodies so we definitely need the hashing.
CREATE EXTENSION IF NOT EXISTS pgcrypto;


-- Capture the script input (body) via a CTE (the WITH part) so we
-- can use it multiple times in the query. Once to save the body,
-- once to hash it.
WITH body AS (SELECT :body::text AS txt)

-- This is exactly the INSERT you would write without UPSERT.
INSERT INTO scraps (hash, body, seen_at)
    SELECT digest(txt, 'sha1'), txt, ARRAY[:ts::timestamptz]
    FROM body

-- Here it gets interesting; we utilize the UNIQUE index on hash
-- to yield a conflict if the body already exists. If that
-- happens, we append the new seen_at (via the special 'EXCLUDED'
-- table) to the seen_at array.
  ON CONFLICT (hash) DO UPDATE
    SET seen_at = scraps.seen_at || EXCLUDED.seen_at

-- The query returns a summary of the row so I can use it in my
-- blog post. This part will run, but the output is ignored, in
-- production.
RETURNING id, left(hash::text, 3) || '...' hash, body, seen_at;
"""


def seed_run(con, body: str, ts: str = "now()") -> None:
    """The article's script, one run: its query with psql's variables filled in as psql does
    (--variable body="'content'" --variable ts='now()'), statement by statement."""
    sql = SEED_QUERY.replace(":body", "'" + body.replace("'", "''") + "'").replace(":ts", ts)
    for statement in sql.split(";\n"):
        if statement.strip():
            con.run(statement)


def seed_history(con) -> None:
    """The article's test script (content, content, changed), then three days of checks in the
    shape of its results: a change on the second day, a page flipping back on the third."""
    for body in ("content", "content", "changed"):
        seed_run(con, body)
    day = "2016-04-0{}T{:02d}:{:02d}:00+02"
    for n in range(30):  # 04-04: 10 checks of v1; 04-05: v1 then v2; 04-06: v2, v3, v2 again
        body = "<p>v1</p>" if n < 15 else "<p>v3</p>" if 22 <= n < 25 else "<p>v2</p>"
        seed_run(con, body, "'" + day.format(4 + n // 10, 8 + n % 10, n) + "'")
    seed_run(con, "<p>v2</p>")  # and the page as it is now


def table(con, sql: str) -> list[tuple]:
    return [tuple(row) for row in con.run(sql)]


@pytest.fixture
def page(httpserver):
    state = {"body": "<p>v2</p>"}
    httpserver.expect_request("/agenda").respond_with_handler(
        lambda request: Response(state["body"], content_type="text/html"))

    class Page:
        url = httpserver.url_for("/agenda")

        def set(self, body):
            state["body"] = body

    return Page()


@pytest.fixture
def jobs_file(tmp_path, monkeypatch, page):
    path = tmp_path / "jobs.toml"
    path.write_text(f'[[scrape]]\nname = "agenda"\nurl = "{page.url}"\n')
    monkeypatch.setenv("JOBS_FILE", str(path))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    return path


def command(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_every_command_refuses_the_seeds_table_with_one_line_naming_the_adoption(database_url, db, jobs_file):
    seed_history(db)
    before = table(db, "SELECT * FROM scraps ORDER BY id")
    rows, times = len(before), sum(len(r[3]) for r in before)
    for module, args in (("functions.migrate", ()), ("functions.scrape", ()), ("functions.report", ()),
                         ("functions.history", ("list",))):
        done = command(module, *args)
        assert (done.returncode, done.stdout) == (2, ""), (module, done.stdout, done.stderr)
        assert done.stderr == (
            f"error: the database holds the seed article's table scraps ({rows} rows, {times} check times) where this"
            " project keeps its history: adopt it into a [[scrape]] job with `python -m functions.migrate"
            " --adopt-seed NAME` (the table is kept, renamed scraps_seed), after removing the article's own"
            " Scheduler job: its INSERT into scraps fails once scraps is our view\n"), module
    assert table(db, "SELECT * FROM scraps ORDER BY id") == before  # untouched
    assert db.run("SELECT to_regclass('schema_migrations') IS NULL")[0][0]


def test_adopting_the_seed_keeps_its_breakdown_and_its_table_and_the_next_check_follows_on(
        database_url, db, jobs_file, page, capsys):
    seed_history(db)
    breakdown = table(db, BREAKDOWN)
    original = table(db, "SELECT * FROM scraps ORDER BY id")
    assert breakdown[-1][0] == "Total:" and breakdown[-1][1] == 34  # 3 + 30 + 1 checks

    assert migrate_fn.main(["--adopt-seed", "agenda"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"adopted the seed's table into target 'agenda': 5 versions, 34 check times from"
                        rf" \S+ \S+ to \S+ \S+ UTC; the table is kept as scraps_seed; schema at version"
                        rf" {len(schema.MIGRATIONS)}\. Remove the article's own Scheduler job \(its INSERT into"
                        r" scraps now fails on the view\): this project's scrape job replaces it\n", out), out

    # The breakdown query prints what it printed; the seed's own rows read back through the view.
    assert table(db, BREAKDOWN) == breakdown
    assert table(db, "SELECT id, body, seen_at FROM scraps ORDER BY id") == [(r[0], r[2], r[3]) for r in original]
    assert db.run("SELECT relkind FROM pg_class WHERE relname = 'scraps'")[0][0] == "v"
    # The seed's table is kept aside, as it was (its sha1 hashes included).
    assert table(db, "SELECT * FROM scraps_seed ORDER BY id") == original
    # The content it saw last is current: the page still shows it, so the next check is unchanged.
    current = db.run("SELECT c.body, t.last_changed_at, t.last_ok_at FROM scrape_targets t"
                     " JOIN scrape_contents c ON c.id = t.last_content_id")
    # ... since its first check after the other contents' last: the test script's 'changed' was
    # seen after v2's checks of 2016, so v2 is current since the last run only.
    last = db.run("SELECT max(ts) FROM scraps_seed, unnest(seen_at) ts")[0][0]
    assert current == [["<p>v2</p>", last, last]]
    assert scrape_fn.main([]) == 0
    assert capsys.readouterr().out == "agenda: unchanged\n"
    page.set("<p>v4</p>")
    assert scrape_fn.main([]) == 0
    assert capsys.readouterr().out == "agenda: changed\n"
    after = table(db, BREAKDOWN)
    assert after[-1][1:] == (36, breakdown[-1][2] + 1)
    # New contents get ids after the seed's (and, as in the seed, a check that found its content
    # used one up: 27 went to the unchanged check, 28 is v4).
    assert db.run("SELECT max(id) FROM scraps")[0][0] == max(r[0] for r in original) + 2

    # Again: harmless, says so, changes nothing.
    assert migrate_fn.main(["--adopt-seed", "agenda"]) == 0
    assert capsys.readouterr().out.startswith("nothing to adopt: the seed's table was adopted before")
    assert table(db, BREAKDOWN) == after
    assert table(db, "SELECT * FROM scraps_seed ORDER BY id") == original


def test_adopting_a_history_longer_than_a_segment_keeps_every_time_in_bounded_rows(database_url, db, jobs_file):
    seed_history(db)
    db.run("UPDATE scraps SET seen_at = seen_at || ARRAY(SELECT timestamptz '2016-04-10' + n * interval '10 min'"
           " FROM generate_series(1, 450) n) WHERE body = '<p>v1</p>'")
    breakdown = table(db, BREAKDOWN)
    assert migrate_fn.main(["--adopt-seed", "agenda"]) == 0
    assert table(db, BREAKDOWN) == breakdown
    v1 = db.run("SELECT id, checks FROM scrape_contents WHERE body = '<p>v1</p>'")[0]
    assert v1[1] == 465
    assert table(db, f"SELECT segment, cardinality(seen_at) FROM scrape_seen WHERE content_id = {v1[0]}"
                     " ORDER BY segment") == [(0, 200), (1, 200), (2, 65)]
    # A check appends to the last segment, as for a history of our own.
    store.record_check(db, "agenda", "http://x/", "<p>v1</p>", datetime(2016, 4, 14, tzinfo=timezone.utc))
    assert table(db, f"SELECT segment, cardinality(seen_at) FROM scrape_seen WHERE content_id = {v1[0]}"
                     " ORDER BY segment")[-1] == (2, 66)


def test_adoption_needs_the_job_and_a_seed_table_and_changes_nothing_when_it_fails(database_url, db, jobs_file,
                                                                                  capsys):
    seed_history(db)
    original = table(db, "SELECT * FROM scraps ORDER BY id")
    assert migrate_fn.main(["--adopt-seed", "minutes"]) == 2
    assert capsys.readouterr().err == f"error: {jobs_file}: no [[scrape]] job named 'minutes' (known: agenda)\n"
    # A table of ours in the way: the rename is rolled back with the rest.
    db.run("CREATE TABLE scrape_targets (id int)")
    assert migrate_fn.main(["--adopt-seed", "agenda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: adopting the seed's table: relation \"scrape_targets\" already exists") \
        and err.endswith("nothing was changed\n"), err
    assert table(db, "SELECT * FROM scraps ORDER BY id") == original
    assert db.run("SELECT to_regclass('scraps_seed') IS NULL")[0][0]


def test_nothing_to_adopt_is_one_line(database_url, db, jobs_file, capsys):
    assert migrate_fn.main(["--adopt-seed", "agenda"]) == 2
    assert capsys.readouterr().err == ("error: --adopt-seed: nothing to adopt: nothing is called scraps (the seed's"
                                       " table has columns id, hash, body, seen_at)\n")
    assert migrate_fn.main([]) == 0
    assert migrate_fn.main(["--adopt-seed", "agenda"]) == 2
    assert "nothing to adopt: scraps is a view, not the seed's table" in capsys.readouterr().err


def test_another_relation_called_scraps_is_refused_not_a_traceback(database_url, db, capsys):
    db.run("CREATE TABLE scraps (url text, fetched timestamptz)")
    assert migrate_fn.main([]) == 2
    assert capsys.readouterr().err == ("error: the database has a table named scraps (url text, fetched timestamp with"
                                       " time zone) that is not this project's: rename it, or point DATABASE_URL at"
                                       " another database\n")


# --- urlwatch -------------------------------------------------------------------------------

URLWATCH_CONFIG = """\
display: {new: true, error: true, unchanged: true, empty-diff: true}
report:
  stdout: {enabled: true, color: false}
  email: {enabled: false}
"""


@pytest.fixture(scope="session")
def urlwatch_exe():
    """urlwatch 2.29 in its own venv (bench/.venv-urlwatch, git-ignored), made once with pip on
    first use as `make bench-scrape` makes it; skipped only when it cannot be installed."""
    from bench.scrape_speed import urlwatch_bin

    try:
        return urlwatch_bin()
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"urlwatch 2.29 could not be installed (no network?): {exc}")


class Watcher:
    """urlwatch run as its users run it, with its own urls.yaml, config, cache and home."""

    def __init__(self, exe, home: Path, urls: str):
        self.exe, self.home = exe, home
        (home / "urls.yaml").write_text(urls)
        (home / "urlwatch.yaml").write_text(URLWATCH_CONFIG)
        self.cache = home / "cache.db"

    def run(self, *args: str) -> str:
        """One run; it starts in a second of its own: urlwatch stamps snapshots in whole seconds,
        and of two saved in one second it may load either as the last."""
        time.sleep(1.01 - time.time() % 1)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home), XDG_CACHE_HOME=str(self.home))
        done = subprocess.run([str(self.exe), "--urls", str(self.home / "urls.yaml"), "--config",
                               str(self.home / "urlwatch.yaml"), "--cache", str(self.cache), "--hooks",
                               str(self.home / "hooks.py"), *args], env=env, cwd=self.home, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout


def agenda_page(item: str, ms: int) -> str:
    return f'<html><body><div id="agenda">{item} <span>Generated in {ms} ms</span></div><p>ads</p></body></html>'


URLS = """\
name: "Council agenda"
url: "{agenda}"
filter:
  - css: "#agenda"
  - html2text
  - re.sub: 'Generated in \\d+ ms'
  - strip
max_tries: 2
---
url: "{minutes}"
---
name: "Minutes, by xpath"
url: "{minutes}#2"
filter:
  - xpath: '//p'
  - grep: 'x'
  - re.sub: {{pattern: 'a', repl: 'b'}}
headers:
  Authorization: "Bearer s3cret-token"
---
command: "echo hi"
"""


@pytest.fixture
def watched(httpserver, urlwatch_exe, tmp_path):
    """urlwatch's cache after four runs: the agenda new, changed, back to its first content (its
    'Generated in' noise changing every time), then a failed check of the minutes."""
    state = {"agenda": agenda_page("Item one", 11), "minutes": ("<p>minutes</p>", 200)}
    httpserver.expect_request("/agenda").respond_with_handler(
        lambda r: Response(state["agenda"], content_type="text/html"))
    httpserver.expect_request("/minutes").respond_with_handler(
        lambda r: Response(state["minutes"][0], status=state["minutes"][1], content_type="text/html"))
    home = tmp_path / "urlwatch"
    home.mkdir()
    watcher = Watcher(urlwatch_exe, home, URLS.format(agenda=httpserver.url_for("/agenda"),
                                                      minutes=httpserver.url_for("/minutes")))
    assert len(re.findall(r"^\d+\. NEW: ", watcher.run(), re.M)) == 4
    state["agenda"] = agenda_page("Item two", 12)
    assert re.search(r"^\d+\. CHANGED: Council agenda$", watcher.run(), re.M)
    state["agenda"] = agenda_page("Item one", 13)
    assert re.search(r"^\d+\. CHANGED: Council agenda$", watcher.run(), re.M)
    state["minutes"] = ("down", 500)
    watcher.run()
    watcher.page = state
    watcher.agenda_url = httpserver.url_for("/agenda")
    return watcher


def snapshots(cache: Path) -> dict[str, list[tuple[datetime, str]]]:
    """The cache's rows as urlwatch's own sqlite file holds them: guid -> [(time, data)] of the
    rows that are snapshots (tries 0), and the count of the others."""
    con = sqlite3.connect(cache)
    found = {}
    for guid, ts, data in con.execute("SELECT guid, timestamp, data FROM CacheEntry WHERE tries = 0"
                                      " ORDER BY timestamp, id"):
        found.setdefault(guid, []).append((datetime.fromtimestamp(ts, timezone.utc), data))
    failures = con.execute("SELECT count(*) FROM CacheEntry WHERE tries > 0").fetchone()[0]
    con.close()
    return found, failures


def test_adopting_urlwatch_writes_its_jobs_and_imports_every_snapshot(database_url, db, watched, tmp_path,
                                                                      monkeypatch, capsys):
    import hashlib

    from shared.app import config

    jobs = tmp_path / "jobs.toml"
    jobs.write_text('[[scrape]]\nname = "mine"\nurl = "http://127.0.0.1:9/"\n')
    monkeypatch.setenv("JOBS_FILE", str(jobs))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    cache, failures = snapshots(watched.cache)
    assert failures >= 1  # the minutes' failed check: urlwatch saved its old data again, not a snapshot

    assert migrate_fn.main(["--adopt-urlwatch", str(watched.home / "urls.yaml"), str(watched.cache),
                            "--write"]) == 0
    out = capsys.readouterr().out
    assert "s3cret-token" not in out
    lines = out.splitlines()
    minutes_name = "localhost-" + watched.agenda_url.split(":")[2].split("/")[0] + "-minutes"  # from its URL
    assert f"wrote 3 [[scrape]] jobs to {jobs}: Council-agenda, {minutes_name}, Minutes-by-xpath" in lines
    for note in ("not mapped: Minutes-by-xpath: filter xpath {\"path\": \"//p\"}: not mapped",
                 "not mapped: Minutes-by-xpath: filter grep {\"re\": \"x\"}: not mapped",
                 "not mapped: Minutes-by-xpath: filter re.sub {\"pattern\": \"a\", \"repl\": \"b\"}: not mapped",
                 "not mapped: Minutes-by-xpath: headers.Authorization is written as"
                 " ${MINUTES_BY_XPATH_HEADERS_AUTHORIZATION}: set that variable to urlwatch's value",
                 "not mapped: job #4: a shell command: not written, its history not imported"):
        assert note in lines, (note, out)

    # The jobs file: ours, then theirs, each a job that builds (its header's variable set).
    assert "s3cret-token" not in jobs.read_text()
    monkeypatch.setenv("MINUTES_BY_XPATH_HEADERS_AUTHORIZATION", "Bearer s3cret-token")
    written = {e.name: config.build(e) for e in config.entries(jobs)}
    assert written["Minutes-by-xpath"].headers == {"Authorization": "Bearer s3cret-token"}
    assert list(written)[0] == "mine" and len(written) == 4
    agenda = written["Council-agenda"]
    assert (agenda.url, agenda.select, agenda.ignore, agenda.text, agenda.alert_after) == (
        watched.agenda_url, ("#agenda",), (r"Generated in \d+ ms",), True, 2)
    assert written["Minutes-by-xpath"].url.endswith("/minutes#2")
    assert written[minutes_name].select == () and written[minutes_name].text is None

    # Every snapshot, with its time, one content per distinct text; the last one is current.
    for name, location in (("Council-agenda", watched.agenda_url), (minutes_name, written[minutes_name].url),
                           ("Minutes-by-xpath", written["Minutes-by-xpath"].url)):
        expected = cache[hashlib.sha1(location.encode()).hexdigest()]
        seen = table(db, f"SELECT ts, body FROM scraps, unnest(seen_at) ts WHERE target = '{name}' ORDER BY ts")
        assert sorted(seen) == sorted(expected), name
        current = db.run("SELECT c.body FROM scrape_targets t JOIN scrape_contents c ON c.id = t.last_content_id"
                         " WHERE t.name = :n", n=name)[0][0]
        assert current == expected[-1][1]
    agenda_versions = table(db, "SELECT body FROM scraps WHERE target = 'Council-agenda' ORDER BY id")
    assert agenda_versions == [("Item one",), ("Item two",)]
    # urlwatch's own account of its history agrees.
    dumped = watched.run("--dump-history", "1")
    assert "Item one" in dumped and "Item two" in dumped and "2 historic snapshot(s)" in dumped
    assert db.run("SELECT count(*) FROM scrape_targets WHERE name LIKE '%echo%'")[0][0] == 0

    # Again: nothing written twice, nothing imported twice.
    before_file, before_rows = jobs.read_text(), table(db, "SELECT * FROM scraps ORDER BY id")
    assert migrate_fn.main(["--adopt-urlwatch", str(watched.home / "urls.yaml"), str(watched.cache),
                            "--write"]) == 0
    again = capsys.readouterr().out
    assert "Council-agenda: history not imported: the target has history here already" in again
    assert "already in " + str(jobs) + ", not written again: Council-agenda" in again
    assert "no job to write" in again
    assert jobs.read_text() == before_file
    assert table(db, "SELECT * FROM scraps ORDER BY id") == before_rows

    # Our filters read the page as urlwatch's did: the next check is unchanged.
    assert scrape_fn.main(["--job", "Council-agenda"]) == 0
    assert capsys.readouterr().out == "Council-agenda: unchanged\n"


def test_without_write_the_jobs_are_printed_as_toml_and_no_file_changes(database_url, watched, tmp_path,
                                                                        monkeypatch, capsys):
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "none.toml"))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    assert migrate_fn.main(["--adopt-urlwatch", str(watched.home / "urls.yaml")]) == 0
    out = capsys.readouterr().out
    data = tomllib.loads(out)
    assert [job["name"] for job in data["scrape"]][0] == "Council-agenda" and len(data["scrape"]) == 3
    assert "# Minutes-by-xpath: filter grep {\"re\": \"x\"}: not mapped" in out.splitlines()
    assert not (tmp_path / "none.toml").exists()


def test_urlwatch_mapping_of_legacy_filters_passwords_and_other_keys():
    from shared.app import urlwatch
    from shared.core import log

    jobs = urlwatch.map_jobs([
        {"url": "https://user:pa55word@example.org/a", "name": "Ägenda: week", "filter": "css:#x,html2text,strip",
         "ignore_cached": True, "timeout": 0, "cookies": {"session": "ck-5521-session-value"}},
        {"url": "https://example.org/b", "filter": [{"re.sub": "\\d+"}, "html2text", {"css": {"selector": "p",
                                                                                             "exclude": ".ad"}}]},
        {"url": "file:///etc/hosts"},
        {"navigate": "https://example.org/c"},
    ], taken={"Agenda-week": "https://elsewhere.example/"})
    first, second, local, browser = jobs
    assert first.table == {"name": "Agenda-week-2", "url": "https://user:${AGENDA_WEEK_2_PASSWORD}@example.org/a",
                           "select": ["#x"], "text": True, "conditional": False,
                           "cookies": {"session": "${AGENDA_WEEK_2_COOKIES_SESSION}"}}
    assert "pa55word" not in " ".join(first.notes) and log.redact("pa55word") == "***"
    assert "Agenda-week-2: timeout 0: ours is from 0 to 300 seconds (default 30)" in first.notes
    assert ("Agenda-week-2: cookies.session is written as ${AGENDA_WEEK_2_COOKIES_SESSION}: set that variable to"
            " urlwatch's value") in first.notes and log.redact("ck-5521-session-value") == "***"
    assert "Agenda-week-2: the URL's password is written as ${AGENDA_WEEK_2_PASSWORD}: set that variable" in first.notes
    # Mapped again against the jobs written: the same names, not new ones.
    again = urlwatch.map_jobs([{"url": "https://user:pa55word@example.org/a", "name": "Ägenda: week"}],
                              taken={"Agenda-week": "https://elsewhere.example/", **{first.name: first.table["url"]}})
    assert again[0].name == "Agenda-week-2"
    assert second.table["select"] == ["p"] and second.table["drop"] == [".ad"] and second.table["ignore"] == ["\\d+"]
    assert any("another order" in note for note in second.notes)
    assert any("applied it to the HTML" in note for note in second.notes)
    assert local.table is None and "file: URL" in local.notes[0]
    assert browser.table is None and "a browser job" in browser.notes[0]


def test_imported_snapshots_keep_no_password_and_import_once(database_url, db):
    from shared.app import adopt, urlwatch

    (job,) = urlwatch.map_jobs([{"url": "https://user:hunter22@example.org/a", "name": "a"}])
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    snapshots = [(t, "one hunter22"), (t.replace(day=2), "two"), (t.replace(day=3), "one hunter22")]
    (done,) = adopt.import_snapshots(db, [(job.name, job.url, snapshots)])
    assert (done.snapshots, done.versions, done.first, done.last) == (3, 2, t, t.replace(day=3))
    assert table(db, "SELECT url FROM scrape_targets") == [("https://user:***@example.org/a",)]
    assert table(db, "SELECT body, cardinality(seen_at) FROM scraps ORDER BY id") == [("one ***", 2), ("two", 1)]
    (again,) = adopt.import_snapshots(db, [(job.name, job.url, snapshots)])
    assert again.skipped and db.run("SELECT sum(checks) FROM scrape_contents")[0][0] == 3


def test_seed_check_times_ahead_of_the_database_clock_are_taken_as_seen_now_and_stay_sorted(database_url, db,
                                                                                           jobs_file, capsys):
    seed_history(db)
    seed_run(db, "<p>from another clock</p>", "(now() + interval '1 year')")
    seed_run(db, "<p>v2</p>", "(now() + interval '2 days')")
    assert migrate_fn.main(["--adopt-seed", "agenda"]) == 0
    out = capsys.readouterr().out
    assert "2 check times dated more than 5 minutes ahead of the database's clock (another clock?): taken as" \
           " seen now." in out
    now = db.run("SELECT now()")[0][0]
    times = [t for (seen,) in db.run("SELECT seen_at FROM scraps ORDER BY id") for t in seen]
    assert max(times) <= now
    for (seen,) in db.run("SELECT seen_at FROM scraps"):
        assert list(seen) == sorted(seen)
    assert db.run("SELECT last_ok_at <= now() FROM scrape_targets WHERE name = 'agenda'")[0][0]


def test_an_adoption_that_runs_out_of_time_says_so_and_changes_nothing(database_url, db, jobs_file, capsys,
                                                                       monkeypatch):
    from shared.core import db as core_db

    seed_history(db)
    original = table(db, "SELECT * FROM scraps ORDER BY id")
    monkeypatch.setattr(core_db, "STATEMENT_TIMEOUT", "1s")
    db.run("BEGIN")
    db.run("LOCK TABLE scraps IN ACCESS EXCLUSIVE MODE")  # another session holding the table
    try:
        assert migrate_fn.main(["--adopt-seed", "agenda"]) == 1
    finally:
        db.run("ROLLBACK")
    err = capsys.readouterr().err
    assert "a statement ran out of time" in err and "unavailable" not in err and err.count("\n") == 1, err
    assert table(db, "SELECT * FROM scraps ORDER BY id") == original


# --- the seed's odd data ------------------------------------------------------------------

@pytest.mark.parametrize("times", ["ARRAY[now() - interval '2 hours', NULL]",
                                   "ARRAY['infinity', now() - interval '2 hours']",
                                   "ARRAY['4713-01-01 00:00+00 BC', now() - interval '2 hours']"],
                         ids=["NULL", "infinity", "BC"])
def test_seed_times_no_tool_could_read_are_refused_with_one_line(database_url, db, jobs_file, times):
    seed_run(db, "content")
    db.run(f"INSERT INTO scraps (hash, body, seen_at) VALUES ('\\x01', 'odd', CAST({times} AS timestamptz[]))")
    done = command("functions.migrate", "--adopt-seed", "agenda")
    assert done.returncode == 2 and done.stderr.startswith("error: --adopt-seed: scraps rows 2 have check times")
    assert "Traceback" not in done.stderr and db.run("SELECT to_regclass('scraps_seed')") == [[None]]


@pytest.mark.parametrize("sql, words", [
    ("INSERT INTO scraps (hash, body, seen_at) VALUES ('\\x01', 'content', ARRAY[now()])",
     "error: --adopt-seed: scraps rows 1, 2 hold the same body"),
    ("ALTER TABLE scraps ALTER COLUMN id TYPE bigint;"
     "INSERT INTO scraps (id, hash, body, seen_at) VALUES (99999999999, '\\x02', 'b', ARRAY[now()])",
     "error: adopting the seed's table: integer out of range (SQLSTATE 22003): nothing was changed"),
], ids=["same body", "id out of range"])
def test_seed_rows_that_cannot_be_adopted_are_refused_with_one_line(database_url, db, jobs_file, sql, words):
    seed_run(db, "content")
    for statement in sql.split(";"):
        db.run(statement)
    done = command("functions.migrate", "--adopt-seed", "agenda")
    assert done.returncode == 2 and done.stderr.startswith(words), done.stderr
    assert db.run("SELECT to_regclass('scraps_seed')") == [[None]]


def test_unsorted_seed_times_are_adopted_sorted_and_counted(database_url, db, jobs_file):
    seed_run(db, "content", "(now() - interval '5 hours')")
    db.run("INSERT INTO scraps (hash, body, seen_at) VALUES ('\\x01', 'odd', ARRAY[now() - interval '1 hour',"
           " now() - interval '3 hours', now() - interval '2 hours'])")
    assert command("functions.migrate", "--adopt-seed", "agenda").returncode == 0
    times = [row[0] for row in db.run("SELECT unnest(seen_at) FROM scrape_seen s JOIN scrape_contents c"
                                      " ON c.id = s.content_id WHERE c.body = 'odd'")]
    assert times == sorted(times) and len(times) == 3
    report = command("functions.report")
    assert report.returncode == 0 and "4 checks in all" in report.stdout
    days = [line.split() for line in report.stdout.splitlines() if line.startswith("  20")]
    assert sum(int(day[1]) for day in days) == 4, report.stdout  # all four in the days' rows, whichever
    # side of midnight they fall (a search in an unsorted segment found two)
