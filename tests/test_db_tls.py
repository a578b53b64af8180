"""sslmode against a real PostgreSQL that speaks TLS on loopback (Heroku requires TLS)."""

import shutil
import socket
import tempfile
from pathlib import Path

import pytest
import trustme

from devtools import localpg
from shared.platform import db


@pytest.fixture(scope="module")
def tls_server():
    """A second server: TCP on 127.0.0.1 with TLS only (plain-text logins are rejected), its
    certificate from a test CA, password authentication."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = Path(tempfile.mkdtemp(prefix="tls-pg-"))
    folder.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def add_tls(datadir: Path, owner):
        (datadir / "server.crt").write_bytes(cert.cert_chain_pems[0].bytes())
        (datadir / "server.key").write_bytes(cert.private_key_pem.bytes())
        (datadir / "server.key").chmod(0o600)
        # Only these rules: the socket for setting up, TLS with a password over TCP, nothing else.
        (datadir / "pg_hba.conf").write_text("local all all trust\n"
                                              "hostssl all all 127.0.0.1/32 scram-sha-256\n"
                                              "hostnossl all all 127.0.0.1/32 reject\n")
        if owner:
            for name in ("server.crt", "server.key", "pg_hba.conf"):
                shutil.chown(datadir / name, owner, owner)

    pgdata = folder / "pgdata"
    socket_url = localpg.ensure_server(pgdata, f"-c ssl=on -c listen_addresses=127.0.0.1 -c port={port}", add_tls)
    con = db.connect(socket_url.replace(f"port={localpg.PORT}", f"port={port}"))
    con.run("ALTER USER postgres PASSWORD 'tls-test-pw'")
    con.close()
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield f"postgresql://postgres:tls-test-pw@127.0.0.1:{port}/postgres", ca_file
    localpg.stop_server(pgdata)


def test_sslmode_require_connects_over_tls(tls_server):
    url, _ = tls_server
    con = db.connect(url + "?sslmode=require")  # Heroku's setting: TLS, certificate not checked
    try:
        assert con.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0] is True
    finally:
        con.close()


def test_sslmode_disable_is_refused_by_a_tls_only_server(tls_server):
    url, _ = tls_server
    with pytest.raises(db.ConnectionRefusedByServer, match="no encryption|pg_hba.conf"):
        db.connect(url + "?sslmode=disable")


def test_verify_full_checks_the_certificate(tls_server):
    url, ca_file = tls_server
    with pytest.raises(ConnectionError, match="certificate verify failed"):
        db.connect(url + "?sslmode=verify-full")  # the test CA is not a trusted one
    con = db.connect(url + f"?sslmode=verify-full&sslrootcert={ca_file}")
    try:
        assert con.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0] is True
    finally:
        con.close()
