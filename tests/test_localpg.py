"""The local PostgreSQL of `make invoke-local` (devtools/localpg.py) and invoke-local itself, run
twice at once in one clone: one server, made and started once, used by both."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from devtools import localpg
from shared.core import db

ROOT = Path(__file__).resolve().parent.parent


def start_together(commands: list[list[str]], env: dict) -> list[subprocess.CompletedProcess]:
    running = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for cmd in commands]
    done = []
    for process in running:
        out, err = process.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def test_two_processes_asking_for_a_new_local_server_at_once_get_the_same_running_one(tmp_path):
    datadir = tmp_path / "pgdata"
    ask = [sys.executable, "-c", f"from devtools import localpg; print(localpg.ensure_server({str(datadir)!r}))"]
    try:
        first, second = start_together([ask, ask], dict(os.environ))
        assert (first.returncode, second.returncode) == (0, 0), (first.stderr, second.stderr)
        assert first.stdout == second.stdout and first.stdout.startswith("postgresql://")
        with db.connection(first.stdout.strip()) as con:
            assert con.run("SELECT 1") == [[1]]
        assert not list(datadir.parent.glob("pgdata.initdb-*"))  # no half-made cluster left behind
    finally:
        localpg.stop_server(datadir)


def test_a_folder_that_holds_files_but_no_cluster_is_one_line():
    folder = Path(tempfile.mkdtemp(prefix="localpg-test-"))
    folder.chmod(0o755)  # reachable by the postgres user, so the folder itself is the one looked at
    datadir = folder / "pgdata"
    datadir.mkdir()
    (datadir / "notes.txt").write_text("mine")
    try:
        localpg.ensure_server(datadir)
    except localpg.LocalPostgresError as exc:
        assert "holds files but no PostgreSQL cluster" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("a folder of someone else's files was taken for a cluster")
    assert (datadir / "notes.txt").read_text() == "mine"
    shutil.rmtree(folder)


def test_two_invoke_locals_at_once_both_run_their_demo_jobs(database_url):
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("JOBS_FILE", None)
    env.pop("JOBS_TOML", None)
    invoke = [sys.executable, "-m", "devtools.invoke_local", "carto_refresh"]
    first, second = start_together([invoke, invoke], env)
    for done in (first, second):
        assert done.returncode == 0, done.stderr
        assert '"outcome": "ok"' in done.stdout or '"outcome": "duplicate"' in done.stdout, done.stdout
    assert not list((ROOT / ".local").glob("jobs.demo.*.toml"))  # each run's own file, removed after it
