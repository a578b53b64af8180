"""Database faults end cleanly: the database going away mid-run, a lock held past the
statement timeout, a read-only database or a schema newer than the code. Every target still
gets its line, one line on stderr says what happened, the documented exit code, no traceback,
and nothing already stored is lost. All against the real PostgreSQL of the tests."""

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from werkzeug import Response

from shared.app import schema
from shared.core import db as shared_db
from shared.scrape.job import ScrapeJob
from tests import runs

ROOT = Path(__file__).resolve().parent.parent


def control(database_url, name=None):
    """A connection of the test's own, to do to the database what an outage would: to another
    database of the server when `name` is given (a database cannot refuse its own connections)."""
    return shared_db.connect(database_url.replace(f"/{name}?", "/postgres?") if name else database_url)


def test_the_database_going_away_mid_run_still_gives_every_target_its_line(database_url, db, httpserver,
                                                                           monkeypatch, tmp_path):
    """Page p12 takes the database away (connections refused, existing ones ended) as it is
    fetched. Checks written before stay stored; the others are reported, not lost silently."""
    name, fixture_pid = db.run("SELECT current_database(), pg_backend_pid()")[0]
    ctl = control(database_url, name)
    lock = threading.Lock()

    def page(request):
        number = int(request.path[2:])
        if number == 12:
            with lock:
                ctl.run(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                ctl.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :d AND pid NOT IN (pg_backend_pid(), :keep)", d=name, keep=fixture_pid)
        return Response(f"<p>page {number}</p>", content_type="text/html")

    httpserver.expect_request(re.compile(r"^/p\d+$")).respond_with_handler(page)
    jobs = "".join(f'[[scrape]]\nname = "t{i:02}"\nurl = "{httpserver.url_for(f"/p{i}")}"\n' for i in range(30))
    schema.ensure(db)
    # Small batches so that some are written before the outage.
    code = ("import sys; from shared.scrape import run; run.BATCH_SIZE = 3; run.BATCH_SECONDS = 0;"
            " from functions import scrape; sys.exit(scrape.main(['--concurrency', '1']))")
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "JOBS_TOML": jobs})
    finally:
        ctl.run(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stderr
    assert [line.split(":")[0] for line in lines] == [f"t{i:02}" for i in range(30)]
    stored = {row[0] for row in db.run("SELECT target FROM scraps")}
    assert 0 < len(stored) < 30
    for line in lines:
        target = line.split(":")[0]
        if target in stored:
            assert line == f"{target}: new"
        else:
            assert line.startswith(f"{target}: error: storage failed: "), done.stdout
    assert "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if " ERROR " in line]) == 1, done.stderr
    ctl.close()


def test_a_lock_held_past_the_statement_timeout_ends_as_errors_not_a_hang(database_url, db, httpserver, monkeypatch):
    httpserver.expect_request("/p").respond_with_data("<p>x</p>", content_type="text/html")
    jobs = [ScrapeJob("locked", httpserver.url_for("/p")), ScrapeJob("free", httpserver.url_for("/p") + "?2")]
    runs.scrape(jobs)  # both targets exist
    ctl = control(database_url)
    ctl.run("BEGIN")
    ctl.run("SELECT * FROM scrape_targets WHERE name = 'locked' FOR UPDATE")  # held by someone else
    monkeypatch.setattr(shared_db, "STATEMENT_TIMEOUT", "1s")
    try:
        results = runs.scrape(jobs)
    finally:
        ctl.run("ROLLBACK")
        ctl.close()
    assert [r.name for r in results] == ["locked", "free"]
    assert all(r.outcome == "error" and r.reason.startswith("storage failed: ") and r.retry for r in results)
    assert "statement timeout" in results[0].reason
    assert db.run("SELECT sum(cardinality(seen_at)) FROM scraps")[0][0] == 2  # the first run's, untouched


def test_a_read_only_database_ends_with_one_line_and_exit_2(database_url, db, httpserver):
    httpserver.expect_request("/p").respond_with_data("<p>x</p>", content_type="text/html")
    schema.ensure(db)
    name = db.run("SELECT current_database()")[0][0]
    db.run(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        done = subprocess.run([sys.executable, "-m", "functions.scrape", "--url", httpserver.url_for("/p")],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        db.run(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: the database is read-only (a replica, or default_transaction_read_only):" \
                          " point DATABASE_URL at the primary\n"
    assert httpserver.log == []  # refused before anything was fetched


def test_a_schema_newer_than_the_code_is_refused_by_every_command(database_url, db):
    schema.ensure(db)
    db.run("INSERT INTO schema_migrations (version) VALUES (:v)", v=len(schema.MIGRATIONS) + 1)
    for module in ("functions.migrate", "functions.scrape", "functions.report"):
        done = subprocess.run([sys.executable, "-m", module], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "JOBS_TOML": '[[scrape]]\nname = "p"\nurl = "http://127.0.0.1:9/"\n'})
        assert done.returncode == 2, (module, done.stdout, done.stderr)
        assert done.stderr.startswith(f"error: the database schema is at version {len(schema.MIGRATIONS) + 1},"
                                      f" newer than this code's {len(schema.MIGRATIONS)}"), done.stderr
        assert "schema at version" not in done.stdout


def test_migrate_without_the_right_to_create_tables_never_reports_success(database_url, db):
    db.run("CREATE ROLE visitor LOGIN")
    db.run("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        url = database_url.replace("postgresql://postgres@", "postgresql://visitor@")
        done = subprocess.run([sys.executable, "-m", "functions.migrate"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env={**os.environ, "DATABASE_URL": url})
    finally:
        db.run("DROP OWNED BY visitor")
        db.run("DROP ROLE visitor")
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.startswith("error: migrating the schema: permission denied for schema public (SQLSTATE 42501)")


def test_any_other_server_error_becomes_one_line_of_failed_work(db):
    """An error the server reports that is neither a refusal nor an outage (a full disk, a bad
    row) ends a command as one line with exit 1 naming its SQLSTATE, never a traceback."""
    from shared.core.errors import JobError

    try:
        db.run("SELECT 1 / 0")
    except Exception as exc:  # noqa: BLE001 - pg8000's DatabaseError
        problem = shared_db.classify(exc, "checking the schema")
    assert isinstance(problem, JobError) and problem.exit_code == 1
    assert str(problem) == "checking the schema: division by zero (SQLSTATE 22012)"
    assert shared_db.classify(KeyError("a bug"), "x").__class__ is KeyError  # bugs stay bugs
