"""DATABASE_URL parsing and connections."""

import ssl
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core import db, log
from tests.loopback import GIVE_UP, SlowHandshake


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgres://u:p@h.example.com:5433/d", ("u", "p", "h.example.com", 5433, "d", "require", None)),
        ("postgresql://u:p@h/d?sslmode=require", ("u", "p", "h", 5432, "d", "require", None)),
        ("postgres://us%40er:p%3Ass%2Fw%40rd@h/d%20b", ("us@er", "p:ss/w@rd", "h", 5432, "d b", "require", None)),
        ("postgresql://postgres:@/postgres?host=/tmp/tmpXYZ", ("postgres", "", None, 5432, "postgres", "prefer", "/tmp/tmpXYZ")),
        ("postgresql://postgres@/x?host=/run/pg&port=6543", ("postgres", None, None, 6543, "x", "prefer", "/run/pg")),
        ("postgresql:///d?host=db.internal&user=me", ("me", None, "db.internal", 5432, "d", "require", None)),
    ],
)
def test_parse_url_forms(url, expected):
    u = db.parse_url(url)
    assert (u.user, u.password, u.host, u.port, u.database, u.sslmode, u.socket_dir) == expected


@pytest.mark.parametrize(
    "url, sslmode",
    [
        # No sslmode: TLS required unless the traffic stays on this machine.
        ("postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d", "require"),  # Heroku's form
        ("postgres://u:p@10.0.0.5/d", "require"),
        ("postgres://u:p@[2001:db8::1]/d", "require"),
        ("postgres://u:p@0.0.0.0/d", "require"),
        ("postgres://u:p@localhost/d", "prefer"),
        ("postgres://u:p@127.0.0.1/d", "prefer"),
        ("postgres://u:p@127.8.9.10/d", "prefer"),
        ("postgres://u:p@[::1]/d", "prefer"),
        # Given: as given, whatever the host.
        ("postgres://u:p@db.example.com/d?sslmode=disable", "disable"),
        ("postgres://u:p@db.example.com/d?sslmode=prefer", "prefer"),
        ("postgres://u:p@localhost/d?sslmode=verify-full", "verify-full"),
    ],
)
def test_without_sslmode_a_host_that_is_not_loopback_requires_tls(url, sslmode):
    assert db.parse_url(url).sslmode == sslmode


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://u:secretpw@h/d", "must start with postgres:// or postgresql://"),
        ("postgres://u:secretpw@h/d?sslmode=always", "sslmode='always' is not one of"),
        ("postgres://u:secretpw@/d", "names no host"),
        ("postgres://u:secretpw@h:port/d", "port that is not a number"),
    ],
)
def test_bad_urls_name_the_problem_not_the_password(url, message):
    with pytest.raises(db.DatabaseConfigError) as info:
        db.parse_url(url)
    assert message in str(info.value) and "secretpw" not in str(info.value)


def test_sslmode_maps_onto_a_tls_context_and_whether_tls_is_required():
    assert db._tls("disable") == (None, False)
    prefer, required = db._tls("prefer")
    assert prefer.verify_mode == ssl.CERT_NONE and not required  # TLS if offered, else plain text
    require, required = db._tls("require")
    assert require.verify_mode == ssl.CERT_NONE and required  # TLS without certificate checks, as Heroku needs
    full, required = db._tls("verify-full")
    assert full.check_hostname and full.verify_mode == ssl.CERT_REQUIRED and required
    assert db._tls("verify-ca")[0].check_hostname is False


def test_safe_form_and_repr_hide_the_password():
    u = db.parse_url("postgres://u:hunter22@h/d")
    assert "hunter22" not in repr(u) and u.safe() == "postgresql://u@h:5432/d"
    assert log.redact("login with hunter22 failed") == "login with *** failed"


def test_connect_sets_statement_timeout_and_utc(database_url):
    con = db.connect(database_url, statement_timeout="1500ms")
    try:
        assert con.run("SHOW statement_timeout")[0][0] == "1500ms"
        assert con.run("SHOW TimeZone")[0][0] == "UTC"
        with pytest.raises(Exception, match="statement timeout"):
            con.run("SELECT pg_sleep(3)")
    finally:
        con.close()


def test_log_lines_never_show_a_registered_secret():
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # stands in for Lambda's or Heroku's log handler
    logging.getLogger().addHandler(handler)
    try:
        db.parse_url("postgres://u:t0p-s3cret@h/d")
        log.setup()
        logging.getLogger("t").error("connecting with postgres://u:t0p-s3cret@h/d")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "connecting with postgres://u:***@h/d" in stream.getvalue()
    assert "t0p-s3cret" not in stream.getvalue()


def test_reads_wait_beyond_the_connect_timeout_up_to_the_statement_timeout(database_url, monkeypatch):
    """A statement longer than the connect timeout still gets its answer."""
    monkeypatch.setattr(db, "CONNECT_TIMEOUT", 1)
    con = db.connect(database_url, statement_timeout="5s")
    try:
        assert con.run("SELECT pg_sleep(2), 42")[0][1] == 42
    finally:
        con.close()


def test_connecting_to_a_server_that_trickles_ends_at_the_connect_timeout():
    """The connect timeout bounds connecting, TLS and the server's first answers together, not each
    read: this server announces an authentication request of 16 KB and sends a byte every 0.2 s."""
    server = SlowHandshake(announce=b"R\x00\x00\x40\x00")
    try:
        started = time.monotonic()
        with pytest.raises(db.DatabaseUnavailable, match="no answer within 1 s"):
            db.connect(f"postgresql://u:pw@127.0.0.1:{server.port}/db?sslmode=disable", timeout=1)
        assert time.monotonic() - started < GIVE_UP
    finally:
        server.close()


@pytest.mark.parametrize("answer", [b"\x16\x03\x03\x00\x05hello", b"HTTP/1.1 400 Bad Request\r\n\r\n"])
def test_a_server_that_does_not_speak_postgresql_is_one_clear_error(answer):
    server = SlowHandshake(announce=answer)
    try:
        with pytest.raises(db.DatabaseUnavailable, match="cannot connect to postgresql://u@127.0.0.1:"):
            db.connect(f"postgresql://u:pw@127.0.0.1:{server.port}/db?sslmode=disable", timeout=1)
    finally:
        server.close()


# -- reading timestamps ----------------------------------------------------------------------

def _read_back(con, text: str):
    """What our connection makes of a timestamptz, and what pg8000's own parser makes of the
    same text PostgreSQL sent."""
    from pg8000 import converters

    ours, sent = con.run("SELECT CAST(:t AS timestamptz), CAST(CAST(:t AS timestamptz) AS text)", t=text)[0]
    return ours, converters.timestamptz_in(sent)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(when=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                         timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                                                    timezone(timedelta(hours=-9, minutes=-59, seconds=-59))])))
def test_timestamps_read_as_pg8000_reads_them(db, when):
    ours, theirs = _read_back(db, when.isoformat())
    assert ours == theirs == when and ours.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["infinity", "-infinity", "0044-03-15 12:00:00+00 BC", "12026-01-01 00:00:00+00",
                                  "0001-01-01 00:00:00+00", "2026-12-04 05:06:07.000001+00"])
def test_timestamps_python_cannot_hold_are_left_to_pg8000(db, text):
    ours, theirs = _read_back(db, text)
    assert ours == theirs and type(ours) is type(theirs)
