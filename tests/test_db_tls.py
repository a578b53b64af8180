"""sslmode against real PostgreSQL servers on loopback and on this machine's own non-loopback
address (Heroku requires TLS): one that speaks only TLS, one that cannot speak it."""

import ipaddress
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
import trustme

from devtools import localpg
from shared.core import db

PASSWORD = "tls-test-pw"


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    candidates = []
    try:
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # a documentation address; connecting UDP sends nothing
            candidates.append(s.getsockname()[0])
        except OSError:
            pass
    return next((a for a in candidates if not ipaddress.ip_address(a).is_loopback
                 and not ipaddress.ip_address(a).is_unspecified), None)


ADDRESS = non_loopback_address()
needs_address = pytest.mark.skipif(ADDRESS is None, reason="this machine has no non-loopback address")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(pg_hba: str, options: str, files: dict[str, bytes] | None = None):
    """A server on 127.0.0.1 (and ADDRESS) with `pg_hba`, password PASSWORD; (TCP port, stop)."""
    folder = Path(tempfile.mkdtemp(prefix="tls-pg-"))
    folder.chmod(0o755)
    port = free_port()
    listen = ",".join(["127.0.0.1"] + ([ADDRESS] if ADDRESS else []))

    def configure(datadir: Path, owner):
        for name, data in {**(files or {}), "pg_hba.conf": pg_hba.encode()}.items():
            (datadir / name).write_bytes(data)
            (datadir / name).chmod(0o600)
            if owner:
                shutil.chown(datadir / name, owner, owner)

    pgdata = folder / "pgdata"
    socket_url = localpg.ensure_server(pgdata, f"{options} -c listen_addresses={listen} -c port={port}", configure)
    con = db.connect(socket_url.replace(f"port={localpg.PORT}", f"port={port}"))
    con.run(f"ALTER USER postgres PASSWORD '{PASSWORD}'")
    con.close()
    return port, lambda: localpg.stop_server(pgdata)


def hba(lines: list[str]) -> str:
    addresses = ["127.0.0.1/32"] + ([f"{ADDRESS}/32"] if ADDRESS else [])
    return "local all all trust\n" + "".join(line.format(a) + "\n" for a in addresses for line in lines)


@pytest.fixture(scope="module")
def tls_server():
    """TLS only (plain-text logins are rejected), its certificate from a test CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", *([ADDRESS] if ADDRESS else []))
    port, stop = start(hba(["hostssl all all {} scram-sha-256", "hostnossl all all {} reject"]), "-c ssl=on",
                       {"server.crt": cert.cert_chain_pems[0].bytes(), "server.key": cert.private_key_pem.bytes()})
    ca_file = Path(tempfile.mkdtemp(prefix="tls-ca-")) / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield port, ca_file
    stop()


@pytest.fixture(scope="module")
def plain_server():
    """A server that cannot speak TLS at all (ssl=off): a plain-text login is all it offers."""
    port, stop = start(hba(["host all all {} scram-sha-256"]), "-c ssl=off")
    yield port
    stop()


def url(host: str, port: int, query: str = "") -> str:
    host = f"[{host}]" if ":" in host else host
    return f"postgresql://postgres:{PASSWORD}@{host}:{port}/postgres{query}"


def uses_tls(con) -> bool:
    try:
        return con.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0]
    finally:
        con.close()


def test_sslmode_require_connects_over_tls(tls_server):
    port, _ = tls_server
    assert uses_tls(db.connect(url("127.0.0.1", port, "?sslmode=require")))  # Heroku's setting


def test_sslmode_disable_is_refused_by_a_tls_only_server(tls_server):
    port, _ = tls_server
    with pytest.raises(db.ConnectionRefusedByServer, match="no encryption|pg_hba.conf"):
        db.connect(url("127.0.0.1", port, "?sslmode=disable"))


def test_verify_full_checks_the_certificate(tls_server):
    port, ca_file = tls_server
    with pytest.raises(ConnectionError, match="certificate verify failed"):
        db.connect(url("127.0.0.1", port, "?sslmode=verify-full"))  # the test CA is not a trusted one
    assert uses_tls(db.connect(url("127.0.0.1", port, f"?sslmode=verify-full&sslrootcert={ca_file}")))


@needs_address
def test_without_sslmode_a_host_that_is_not_loopback_gets_tls(tls_server):
    """Heroku Postgres's DATABASE_URL has no sslmode: it connects over TLS as is."""
    port, _ = tls_server
    assert uses_tls(db.connect(url(ADDRESS, port)))


@needs_address
def test_without_sslmode_a_host_that_is_not_loopback_never_falls_back_to_plain_text(plain_server):
    with pytest.raises(db.ConnectionRefusedByServer) as info:
        db.connect(url(ADDRESS, plain_server))
    message = str(info.value)
    assert "the server does not offer TLS, which a URL without sslmode for a host that is not loopback requires" in message
    assert "add ?sslmode=disable (or prefer)" in message and PASSWORD not in message
    assert info.value.exit_code == 2  # a setting to fix, not an outage to retry
    with pytest.raises(db.ConnectionRefusedByServer, match="which sslmode=require requires"):
        db.connect(url(ADDRESS, plain_server, "?sslmode=require"))


@needs_address
@pytest.mark.parametrize("sslmode", ["prefer", "disable", "allow"])
def test_sslmode_prefer_or_disable_allows_plain_text(plain_server, sslmode):
    assert uses_tls(db.connect(url(ADDRESS, plain_server, f"?sslmode={sslmode}"))) is False


def test_a_loopback_host_without_sslmode_allows_plain_text(plain_server):
    assert uses_tls(db.connect(url("127.0.0.1", plain_server))) is False
