"""Smoke tests of the deploy artifacts as built by `make build`.

dist/lambda.zip is unpacked into an empty folder and its handlers run in a fresh Python of the
Lambda runtime's version that sees only that folder (plus boto3, which the Lambda runtime
provides), invoked with real EventBridge Scheduler events against real PostgreSQL, a loopback
page, the CARTO emulator, and moto standing in for SSM (where the secrets live).

The Heroku tarball is unpacked, its requirements installed into a fresh virtual environment,
and every Procfile entry run with honcho (the Procfile runner).
"""

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import boto3
import pytest

from devtools import build
from devtools.carto_emulator import CartoEmulator

ROOT = Path(__file__).resolve().parent.parent
JOBS = """
[[scrape]]
name = "smoke-page"
url = "${SMOKE_PAGE_URL}"

[[refresh]]
name = "smoke-refresh"
sql_api_url = "${SMOKE_CARTO_URL}"
api_key = "${CARTO_API_KEY}"
sql = "SELECT smoke_refresh()"
"""
REFRESH_SQL = """
CREATE TABLE IF NOT EXISTS smoke_counts (n int);
CREATE OR REPLACE FUNCTION smoke_refresh() RETURNS void LANGUAGE sql AS
  'INSERT INTO smoke_counts VALUES (1)';
"""


runtime_python = build.runtime_python

needs_runtime_python = pytest.mark.skipif(runtime_python() is None,
                                          reason=f"no python{build.LAMBDA_PYTHON} on this machine")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Build both artifacts once, with the smoke jobs file inside, as `make build` does."""
    folder = tmp_path_factory.mktemp("artifacts")
    jobs = folder / "jobs.toml"
    jobs.write_text(JOBS)
    old = os.environ.get("JOBS_FILE")
    os.environ["JOBS_FILE"] = str(jobs)
    try:
        zip_path = build.build_lambda(folder / "lambda.zip")
        tar_path = build.build_heroku(folder / "heroku.tar.gz")
    finally:
        os.environ.pop("JOBS_FILE") if old is None else os.environ.__setitem__("JOBS_FILE", old)
    return zip_path, tar_path


@pytest.fixture
def smoke_env(database_url, httpserver, db):
    """The outside world both artifacts run against: a page, a CARTO emulator, the database."""
    httpserver.expect_request("/smoke").respond_with_data("<p>smoke test page</p>", content_type="text/html")
    db.run("CREATE TABLE IF NOT EXISTS smoke_counts (n int)")
    for statement in REFRESH_SQL.split(";\n"):
        if statement.strip():
            db.run(statement)
    emulator = CartoEmulator(database_url, users={"smoke": "smoke-master-key"})
    emulator.start()
    yield {
        "SMOKE_PAGE_URL": httpserver.url_for("/smoke"),
        "SMOKE_CARTO_URL": emulator.sql_url("smoke"),
        "CARTO_API_KEY": "smoke-master-key",
        "DATABASE_URL": database_url,
    }
    emulator.stop()


def test_lambda_zip_is_reproducible_small_and_clean(artifacts, tmp_path, monkeypatch):
    zip_path, _ = artifacts
    names = zipfile.ZipFile(zip_path).namelist()
    # Budget 6 MB (Lambda allows 50): it holds bytecode of each kind's run modules too, which
    # every run imports after the handler (bench/RESULTS.md, "Lambda artifact").
    assert zip_path.stat().st_size < 6_000_000
    assert "functions/scrape.py" in names and "shared/scrape/store.py" in names and "jobs.toml" in names
    assert not [n for n in names if n.startswith(("tests/", "devtools/", "bench/", "pytest", "boto3/", "botocore/", "bin/"))]
    # pip's RECORD files hash console scripts that name the building machine's Python: left out,
    # so that builds in two checkouts are identical too.
    assert not [n for n in names if n.endswith(".dist-info/RECORD")]
    # Bytecode only for the runtime's Python, next to a source it was compiled from.
    tag = f"cpython-{build.LAMBDA_PYTHON.replace('.', '')}"
    for name in (n for n in names if n.endswith(".pyc")):
        folder, file = name.rsplit("__pycache__/", 1)
        assert file.endswith(f".{tag}.pyc") and f"{folder}{file.split('.')[0]}.py" in names, name
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "jobs.toml"))
    (tmp_path / "jobs.toml").write_text(JOBS)
    again = build.build_lambda(tmp_path / "again.zip")
    assert again.read_bytes() == zip_path.read_bytes()


@needs_runtime_python
@pytest.mark.parametrize("function, job", [("scrape", "smoke-page"), ("carto_refresh", "smoke-refresh")])
def test_lambda_handlers_run_from_the_unpacked_zip(artifacts, smoke_env, moto_server, db, tmp_path, function, job):
    zip_path, _ = artifacts
    task_root = tmp_path / "task"
    zipfile.ZipFile(zip_path).extractall(task_root)
    # Secrets live in SSM, as deployed; the function's environment names only where.
    ssm = boto3.client("ssm")
    for name in ("DATABASE_URL", "CARTO_API_KEY"):
        ssm.put_parameter(Name=f"/smoke/{name}", Value=smoke_env[name], Type="SecureString", Overwrite=True)
    boto3_home = str(Path(boto3.__file__).parent.parent)  # stands in for the runtime's copy
    event = {"job": job, "scheduled_time": "2026-11-21T04:00:00Z"}
    script = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(task_root)!r}, {boto3_home!r}]\n"
        f"from functions.{function} import handler\n"
        f"print(json.dumps(handler({event!r}, None)))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "JOBS_FILE": "jobs.toml", "SECRETS_SSM_PATH": "/smoke/",
        "SMOKE_PAGE_URL": smoke_env["SMOKE_PAGE_URL"], "SMOKE_CARTO_URL": smoke_env["SMOKE_CARTO_URL"],
        **{k: v for k, v in moto_server.items() if k != "AWS_REGION"},
    }
    # -I: isolated (no user site, no PYTHON* variables, no cwd on the path); -S: no site-packages.
    done = subprocess.run([runtime_python(), "-I", "-S", "-c", script], cwd=task_root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(r["job"], r["outcome"] if "outcome" in r else r.get("status")) for r in result["results"]][0][0] == job
    assert "smoke-master-key" not in done.stdout + done.stderr
    if function == "scrape":
        assert result["results"][0]["outcome"] == "new"
        assert db.run("SELECT body FROM scraps WHERE target = 'smoke-page'")[0][0] == "<p>smoke test page</p>"
    else:
        assert db.run("SELECT count(*) FROM smoke_counts")[0][0] == 1


@pytest.fixture(scope="module")
def heroku_app(artifacts, tmp_path_factory):
    """The Heroku tarball unpacked, with its requirements in a fresh virtual environment."""
    if runtime_python() is None:
        pytest.skip(f"no python{build.LAMBDA_PYTHON} for the app's .python-version")
    _, tar_path = artifacts
    app = tmp_path_factory.mktemp("heroku") / "app"
    with tarfile.open(tar_path) as tar:
        tar.extractall(app, filter="data")
    assert (app / ".python-version").read_text().strip() == build.LAMBDA_PYTHON
    subprocess.run([runtime_python(), "-m", "venv", str(app / ".venv")], check=True)
    subprocess.run([str(app / ".venv/bin/pip"), "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(app / "requirements.txt")], check=True, timeout=600)
    # Then the buildpack's hook, as it runs it: made executable, the app's Python on PATH.
    (app / "bin/post_compile").chmod(0o755)
    subprocess.run([str(app / "bin/post_compile")], cwd=app, check=True, timeout=300,
                   env={"PATH": f"{app / '.venv/bin'}:/usr/bin:/bin", "LANG": "C.UTF-8"})
    return app


def test_the_slug_carries_our_bytecode(heroku_app):
    """Each Scheduler run is a fresh dyno: what the build compiled is what it loads, nothing is
    compiled again (PYTHONDONTWRITEBYTECODE or not)."""
    python = str(heroku_app / ".venv/bin/python")
    tag = subprocess.run([python, "-c", "import sys; print(sys.implementation.cache_tag)"], capture_output=True,
                         text=True, check=True).stdout.strip()
    sources = [p for package in ("shared", "functions") for p in (heroku_app / package).rglob("*.py")]
    assert len(sources) > 50
    missing = [str(p) for p in sources if not (p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc").exists()]
    assert not missing
    loaded = subprocess.run([python, "-v", "-c", "import functions.scrape"], cwd=heroku_app, capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    ours = [line for line in loaded.stderr.splitlines() if "code object from" in line and str(heroku_app / "shared") in line]
    assert ours and all(".pyc" in line for line in ours)


def procfile_entries(app: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (app / "Procfile").read_text().splitlines() if line.strip())


def test_every_procfile_entry_runs_with_honcho(heroku_app, smoke_env, db):
    entries = procfile_entries(heroku_app)
    assert set(entries) == {"release", "scrape", "carto_refresh", "report"}
    env = {"PATH": f"{heroku_app / '.venv/bin'}:/usr/bin:/bin", "LANG": "C.UTF-8", "JOBS_FILE": "jobs.toml",
           **smoke_env}
    honcho = [sys.executable, "-m", "honcho", "-d", str(heroku_app), "-f", str(heroku_app / "Procfile"),
              "--no-prefix", "start"]
    outputs = {}
    for process in ("release", "scrape", "carto_refresh", "report"):  # release first: it migrates
        done = subprocess.run(honcho + [process], env=env, cwd=heroku_app, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, (process, done.stdout, done.stderr)
        outputs[process] = done.stdout
    assert "schema at version" in outputs["release"]
    assert "smoke-page: new" in outputs["scrape"]
    assert "smoke-refresh" in outputs["carto_refresh"]
    assert "smoke-page" in outputs["report"]
    assert "smoke-master-key" not in "".join(outputs.values())
    assert db.run("SELECT count(*) FROM smoke_counts")[0][0] == 1
