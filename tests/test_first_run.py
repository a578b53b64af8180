"""A first run without surprises: what `make invoke-local` installs, the local PostgreSQL from a
private home folder (root's is mode 700), the demo page's address shown as it is, and the
examples a new user pastes (app.json's JOBS_TOML, jobs.example.toml) working as pasted."""

import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools import invoke_local, localpg
from infra import plan, template
from shared.app import config, entry, events
from shared.app.kinds import KINDS
from shared.core import db

ROOT = Path(__file__).resolve().parent.parent


def dry_run(target: str, tmp_path: Path) -> str:
    """The commands `make TARGET` would run in a fresh clone (no .venv yet)."""
    clone = tmp_path / "clone"
    clone.mkdir(exist_ok=True)
    for name in ("Makefile", "requirements.txt", "requirements-deploy.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, clone / name)
    done = subprocess.run(["make", "--dry-run", target], cwd=clone, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_invoke_local_installs_only_the_runtime_and_test_installs_the_rest(tmp_path):
    first_run = dry_run("invoke-local", tmp_path)
    assert "-r requirements.txt" in first_run and "devtools.invoke_local scrape" in first_run
    assert "requirements-dev.txt" not in first_run and "requirements-deploy.txt" not in first_run
    tests = dry_run("test", tmp_path)
    assert "-r requirements.txt" in tests and "-r requirements-dev.txt" in tests and "pytest" in tests
    deploy = dry_run("destroy-aws", tmp_path)
    assert "-r requirements-deploy.txt" in deploy and "requirements-dev.txt" not in deploy
    runtime = (ROOT / "requirements.txt").read_text().lower()
    for tool in ("pytest", "moto", "cfn-lint", "carto==", "boto3", "psycopg"):
        assert tool not in runtime


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's server runs as another user (postgres)")
def test_the_local_server_works_from_a_private_folder_without_opening_it(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)  # as /root is
    wanted = home / "clone" / ".local" / "pgdata"
    url = localpg.ensure_server(wanted)
    actual = wanted.resolve()
    try:
        assert wanted.is_symlink() and not actual.is_relative_to(home)
        assert actual.stat().st_uid == pwd.getpwnam("postgres").pw_uid
        assert home.stat().st_mode & 0o777 == 0o700  # the user's folder is as it was
        con = db.connect(url)
        assert con.run("SELECT 1")[0][0] == 1
        con.close()
        assert localpg.ensure_server(wanted) == url  # the next run finds the same server and data
    finally:
        localpg.stop_server(wanted)
        shutil.rmtree(actual.parent)
    assert not (actual / "postmaster.pid").exists()


def test_invoke_local_shows_the_demo_page_address_as_it_is(database_url, db, monkeypatch, capsys):
    monkeypatch.setenv("JOBS_FILE", "")  # invoke-local's own demo
    for name in ("DEMO_URL", "DEMO_CARTO_SQL_API_URL", "DEMO_CARTO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert invoke_local.main(["scrape"]) == 0
    assert '"outcome": "new"' in capsys.readouterr().out
    stored = db.run("SELECT url FROM scrape_targets WHERE name = 'demo'")[0][0]
    assert stored.startswith("http://127.0.0.1:") and stored.endswith("/page.html")
    assert "127.0.0.1" not in (ROOT / "events" / "jobs.demo.toml").read_text()  # the sample stays as written


def test_app_json_jobs_toml_example_works_as_pasted(monkeypatch):
    description = json.loads((ROOT / "app.json").read_text())["env"]["JOBS_TOML"]["description"]
    example = description.split("works as pasted: ", 1)[1]
    monkeypatch.setenv("JOBS_TOML", example)
    jobs, invalid = entry.resolve(KINDS["scrape"], events.Request())
    assert [(job.name, job.url) for job in jobs] == [("agenda", "https://example.org/agenda")] and invalid == []


def test_the_example_jobs_file_plans_for_aws_with_nothing_set(monkeypatch):
    for name in ("CARTO_USERNAME", "CARTO_API_KEY", "DB_CONNECTIONS", "JOBS_TOML"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOBS_FILE", str(ROOT / "jobs.example.toml"))
    p = plan.load()
    assert [(s.function.kind, s.jobs) for s in p.schedules] == [("scrape", ("council-agenda",)), ("refresh", ("bikeways",))]
    assert template.render(p)["Resources"]["ScrapeFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1
    assert config.schedules() and sum(p.reserved.values()) == 2


def test_the_deploy_guides_one_line_jobs_toml_works_as_pasted(monkeypatch):
    readme = (ROOT / "docs" / "deploy.md").read_text()
    example = readme.split("which works as pasted:\n\n```toml\n", 1)[1].split("\n```", 1)[0]
    monkeypatch.setenv("JOBS_TOML", example)
    jobs, invalid = entry.resolve(KINDS["scrape"], events.Request())
    assert [job.name for job in jobs] == ["agenda", "minutes"] and invalid == []
