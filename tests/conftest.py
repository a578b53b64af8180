"""Shared fixtures: a real PostgreSQL server for the session, a fresh database per test.

The server is started with shared.localpg (as the `postgres` user when the tests run as
root, since PostgreSQL refuses root) and handed to pytest-postgresql as an existing server,
whose janitor clones a template database for every test. Pass --postgresql-host (and
--postgresql-port/-user/-password) to use a server of your own instead.
"""

import os
import tempfile
from pathlib import Path

import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors.noop import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from devtools import localpg
from tests.loopback import RawSite, Silent


@pytest.fixture(scope="session")
def pg_server(request):
    host = request.config.getoption("postgresql_host", None)
    if host and host != "127.0.0.1" or os.environ.get("TEST_PG_HOST"):
        yield NoopExecutor(host=os.environ.get("TEST_PG_HOST", host),
                           port=int(os.environ.get("TEST_PG_PORT", request.config.getoption("postgresql_port") or 5432)),
                           user=os.environ.get("TEST_PG_USER", request.config.getoption("postgresql_user") or "postgres"),
                           password=os.environ.get("TEST_PG_PASSWORD", request.config.getoption("postgresql_password")),
                           options="", dbname="tests")
        return
    # A folder every user can traverse, so the postgres user reaches it when we are root.
    datadir = Path(tempfile.mkdtemp(prefix="scheduled-jobs-tests-"))
    datadir.chmod(0o755)
    pgdata = datadir / "pgdata"
    localpg.ensure_server(pgdata)
    try:
        yield NoopExecutor(host=str(pgdata), port=localpg.PORT, user="postgres", options="", dbname="tests")
    finally:
        localpg.stop_server(pgdata)


@pytest.fixture(scope="session")
def pg_noproc(pg_server):
    """The server with an empty template database that each test's database is cloned from."""
    janitor = DatabaseJanitor(user=pg_server.user, host=pg_server.host, port=pg_server.port,
                              password=pg_server.password, dbname=pg_server.template_dbname,
                              as_template=True)
    janitor.drop()  # left over by an interrupted run against a long-lived server
    with janitor:
        yield pg_server

postgresql = factories.postgresql("pg_noproc")


@pytest.fixture
def database_url(postgresql, monkeypatch):
    """DATABASE_URL of this test's fresh, empty database, also set in the environment."""
    info = postgresql.info
    if info.host.startswith("/"):
        url = f"postgresql://{info.user}@/{info.dbname}?host={info.host}&port={info.port}"
    else:
        password = f":{info.password}" if info.password else ""
        url = f"postgresql://{info.user}{password}@{info.host}:{info.port}/{info.dbname}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
def db(database_url):
    """A pg8000 connection to the test database (our own driver's connect)."""
    from shared.core import db as shared_db

    con = shared_db.connect(database_url)
    yield con
    con.close()


@pytest.fixture
def jobs_file(tmp_path, monkeypatch):
    """Write the jobs file of a test: jobs_file(text) -> its path, set as $JOBS_FILE."""
    def write(text: str):
        path = tmp_path / "jobs.toml"
        path.write_text(text)
        monkeypatch.setenv("JOBS_FILE", str(path))
        monkeypatch.delenv("JOBS_TOML", raising=False)
        return path
    return write


@pytest.fixture
def moto_server(monkeypatch):
    """AWS, the one part that cannot run here: moto in server mode on loopback, with boto3
    pointed at it through the environment (as the deployed code's boto3 would be at AWS)."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield env
    server.stop()


# Loopback servers several test modules use (tests/loopback.py).

@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()



@pytest.fixture
def raw_site():
    site = RawSite()
    yield site
    site.close()

