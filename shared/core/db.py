"""DATABASE_URL parsing and pg8000 connections.

pg8000 takes keyword arguments, not URLs, so the URL is parsed here. Accepted forms:

    postgres://user:pass@host:5432/dbname?sslmode=require      (Heroku)
    postgresql://user:p%40ss@host/dbname                          (percent-encoded parts)
    postgresql://postgres:@/postgres?host=/tmp/folder&port=5432   (Unix socket folder)

`sslmode` follows libpq: disable, allow/prefer (try TLS, fall back), require (TLS without
certificate checks, what Heroku asks for), verify-ca, verify-full; `sslrootcert` names the CA
file those two check against (default: the system's trusted CAs). Without `sslmode`, a host
that is not loopback gets `require`: a password never crosses a network in plain text because
a server (or someone in between) declined TLS. Loopback hosts and Unix sockets keep libpq's
`prefer`.
"""

import os
import re
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs, unquote, urlsplit

from shared.core import log
from shared.core.errors import USAGE, ConfigError, WorkFailed
from shared.core.names import NAME

CONNECT_TIMEOUT = 30  # seconds to connect (reads then wait up to the statement timeout)
STATEMENT_TIMEOUT = "60s"  # server-side cap per statement


class DatabaseConfigError(ConfigError):
    """DATABASE_URL is missing or malformed."""


class DatabaseUnavailable(WorkFailed, ConnectionError):
    """The database cannot be reached now (network, server starting or full): it may pass."""


class ConnectionRefusedByServer(DatabaseUnavailable):
    """The server answered and said no (wrong password, no such database): trying again will
    not help, unlike a network failure or a server that is starting or full. Fix the URL."""

    exit_code = USAGE


class DatabaseRefused(WorkFailed):
    """The database works but will not let us do our work: a read-only user or replica,
    `permission denied`, a schema newer than this code. A rerun cannot mend it: fix the
    database or the URL."""

    exit_code = USAGE


# SQLSTATEs of a refusal that may pass: too many connections, starting up or shutting down.
TRANSIENT = {"53300", "57P03", "57P01"}
# SQLSTATEs that say "not allowed": insufficient privilege, read-only transaction.
REFUSED = {"42501", "25006"}


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a pg8000 DatabaseError (None for other errors)."""
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return fields.get("C")


# Errors of a server that answers, but not in time: still exit 1 (the next run may fit).
OUT_OF_TIME = {"57014": "a statement ran out of time (statement timeout, or cancelled at the run's deadline)",
               "55P03": "a lock another session held was not released in time"}


def classify(exc: BaseException, doing: str) -> Exception:
    """A driver error met while `doing` something, as the JobError a run ends with: refused
    (exit 2) when the database says no, unavailable (exit 1) when it is gone or too slow (a lock
    held past the statement timeout), any other error of the server's as failed work naming its
    SQLSTATE (a full disk, one bad row), and anything else (a bug) as itself."""
    code = sqlstate(exc)
    message = exc.args[0].get("M", str(exc)) if code else str(exc)
    if code in REFUSED:
        return DatabaseRefused(log.redact(f"{doing}: {message} (SQLSTATE {code}): the database user needs"
                                          " to create and write this project's tables"))
    if code in OUT_OF_TIME:  # the server is there; the work did not fit its time: say which
        return DatabaseUnavailable(log.redact(f"{doing}: {OUT_OF_TIME[code]} ({message}, SQLSTATE {code});"
                                              " nothing of it was kept"))
    if code and code.startswith("08") or code in TRANSIENT \
            or type(exc).__name__ == "InterfaceError" or isinstance(exc, (OSError, ConnectionError)):
        return DatabaseUnavailable(log.redact(f"{doing}: the database is unavailable: {message}"))
    if code:
        return WorkFailed(log.redact(f"{doing}: {message} (SQLSTATE {code})"))
    return exc


@contextmanager
def transaction(con):
    """BEGIN ... COMMIT, or ROLLBACK on any error. A connection that broke cannot roll back: the
    server has ended the transaction already, and the original error is the one that counts."""
    con.run("BEGIN")
    try:
        yield con
        con.run("COMMIT")
    except BaseException:
        try:
            con.run("ROLLBACK")
        except Exception:  # noqa: BLE001 - see above
            pass
        raise


def healthy(con) -> bool:
    """Whether the connection still answers (after a failed transaction, say)."""
    try:
        con.run("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means: reconnect
        return False


@dataclass(frozen=True)
class DbUrl:
    user: str
    password: str | None = field(repr=False)
    host: str | None
    port: int
    database: str
    sslmode: str = "prefer"  # as given; without one: require, or prefer for loopback and sockets
    socket_dir: str | None = None
    sslrootcert: str | None = None  # CA file for verify-ca / verify-full (else the system's)

    def safe(self) -> str:
        """The URL without its password, for messages."""
        where = self.socket_dir or f"{self.host}:{self.port}"
        return f"postgresql://{self.user}@{where}/{self.database}"


SSLMODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def parse_url(url: str, register: bool = True) -> DbUrl:
    """Parse a libpq-style URL; errors never repeat the password, which is registered as a
    secret unless `register` is false (a check that only validates)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise DatabaseConfigError(
            f"DATABASE_URL must start with postgres:// or postgresql://, not {parts.scheme or '(none)'}://"
        )
    password = unquote(parts.password) if parts.password is not None else None
    if register:
        log.add_secret(password)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    sslmode = query.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        raise DatabaseConfigError(f"DATABASE_URL sslmode={sslmode!r} is not one of {sorted(SSLMODES)}")
    try:
        port = int(query.get("port") or parts.port or 5432)
    except ValueError:
        raise DatabaseConfigError("DATABASE_URL has a port that is not a number") from None
    host = unquote(parts.hostname) if parts.hostname else None
    socket_dir = query.get("host")
    if socket_dir and not socket_dir.startswith("/"):
        host, socket_dir = socket_dir, None
    if host is None and socket_dir is None:
        raise DatabaseConfigError("DATABASE_URL names no host (nor a host= socket folder)")
    database = unquote(parts.path.lstrip("/")) or query.get("dbname") or "postgres"
    user = unquote(parts.username) if parts.username else query.get("user", "postgres")
    if sslmode is None:
        sslmode = "prefer" if socket_dir or is_loopback(host) else "require"
    return DbUrl(user, password, host, port, database, sslmode, socket_dir, query.get("sslrootcert"))


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1): traffic that never leaves
    this machine. A name is taken as written, never resolved: what it resolves to may change."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        import ipaddress  # here: a cold start that never connects does not pay for it

        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _tls(sslmode: str, rootcert: str | None = None):
    """libpq's sslmode as (a TLS context or None, whether TLS is required)."""
    if sslmode == "disable":
        return None, False
    import ssl  # here: importing it costs a Lambda cold start 25 ms, and a CARTO refresh never needs it

    if sslmode in ("allow", "prefer", "require"):  # TLS, certificate not checked (Heroku's setting)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context, sslmode == "require"
    context = ssl.create_default_context(cafile=rootcert)
    if sslmode == "verify-ca":
        context.check_hostname = False
    return context, True


def connect(url: str | None = None, statement_timeout: str | None = None, timeout: float | None = None,
            limits=None):
    """Open a pg8000 native connection to `url` (default: $DATABASE_URL), with connect and
    statement timeouts. `timeout`: seconds to connect, when a caller's deadline is nearer than
    CONNECT_TIMEOUT (a refresh's time budget): connecting, TLS and authentication included,
    however slowly a server answers. `limits`: how big a message may be read (pgwire.Limits).
    The connection's socket is watched by this thread's deadline watch, if any."""
    # Imported here: a CARTO refresh never touches PostgreSQL, and pg8000 with its SCRAM and
    # ASN.1 dependencies is a third of a handler's import time.
    import struct

    import pg8000.native

    from shared.core import deadline, pgwire

    url = url or os.environ.get("DATABASE_URL")
    if not url:
        raise DatabaseConfigError("DATABASE_URL is not set")
    db = parse_url(url)
    seconds = min(CONNECT_TIMEOUT, timeout) if timeout else CONNECT_TIMEOUT
    try:
        tls, required = _tls(db.sslmode, db.sslrootcert) if not db.socket_dir else (None, False)
    except OSError as exc:  # ssl.SSLError is one too
        raise DatabaseConfigError(f"DATABASE_URL sslrootcert={db.sslrootcert!r} cannot be used: {exc}") from None
    watched = None
    try:
        with deadline.watching(time.monotonic() + seconds) as watched:
            sock = pgwire.open_socket(f"{db.socket_dir}/.s.PGSQL.{db.port}" if db.socket_dir else (db.host, db.port),
                                      seconds, tls, required, db.host if tls is not None else None, limits)
            try:
                con = pg8000.native.Connection(
                    user=db.user, password=db.password, database=db.database, sock=sock, ssl_context=False,
                    application_name=NAME,
                    startup_params={"statement_timeout": statement_timeout or STATEMENT_TIMEOUT, "TimeZone": "UTC"})
            except BaseException:
                sock.close_file()
                sock.close()
                raise
    except pgwire.TLSNotOffered:
        explicit = "sslmode" in parse_qs(urlsplit(url).query)
        given = f"sslmode={db.sslmode}" if explicit else "a URL without sslmode for a host that is not loopback"
        raise ConnectionRefusedByServer(
            f"cannot connect to {db.safe()}: the server does not offer TLS, which {given} requires;"
            " if plain text is acceptable on this network, add ?sslmode=disable (or prefer) to DATABASE_URL"
        ) from None
    except pg8000.native.DatabaseError as exc:
        fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        message = log.redact(str(fields.get("M", exc)))
        if fields.get("C") in TRANSIENT:
            raise DatabaseUnavailable(f"cannot connect to {db.safe()}: {message}") from None
        raise ConnectionRefusedByServer(f"cannot connect to {db.safe()}: {message}") from None
    except (pg8000.native.InterfaceError, OSError) as exc:
        if watched is not None and watched.expired:
            raise DatabaseUnavailable(f"cannot connect to {db.safe()}: no answer within {seconds:g} s") from None
        raise DatabaseUnavailable(f"cannot connect to {db.safe()}: {log.redact(_reason(exc))}") from None
    except (KeyError, IndexError, ValueError, struct.error) as exc:  # pg8000 meeting bytes no PostgreSQL sends
        raise DatabaseUnavailable(f"cannot connect to {db.safe()}: the server did not answer as PostgreSQL"
                                  f" does ({type(exc).__name__})") from None
    _sockets[con] = sock
    con.register_in_adapter(TIMESTAMPTZ, _timestamptz)
    deadline.register(sock)  # the caller's watch, if any, bounds what the connection does next
    limit = _seconds(statement_timeout or STATEMENT_TIMEOUT)
    set_read_timeout(con, limit + READ_MARGIN if limit else None)
    return con


_sockets: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # connection -> its pgwire socket

TIMESTAMPTZ = 1184  # the type's oid, fixed in PostgreSQL's catalog


def _timestamptz(text: str):
    """A timestamptz as PostgreSQL writes it to our sessions (ISO, TimeZone UTC), parsed in C:
    pg8000's own parser (strptime) takes some 6 us a value, a fifth of a 500-target run's overdue
    check. What this does not read (infinity, BC, years past 9999) goes to pg8000's parser, which
    decides as it always did."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        from pg8000 import converters

        return converters.timestamptz_in(text)


def _reason(exc: BaseException) -> str:
    """What went wrong, as the innermost error says it ("Connection refused", not pg8000's
    "network error")."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def watch(con) -> None:
    """Let this thread's deadline watch end what `con` does (a refresh watches its statement)."""
    from shared.core import deadline

    sock = _sockets.get(con)
    if sock is not None:
        deadline.register(sock)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str | None) -> str | None:
    """`text` as PostgreSQL can hold it: without NUL characters (text columns refuse them) and
    with any lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return text.replace("\x00", "") if "\x00" in text else text


@contextmanager
def connection(url: str | None = None, statement_timeout: str | None = None, timeout: float | None = None):
    """`connect()` as a context manager whose closing never raises: a connection that broke
    has nothing left to close, and its error must not replace the run's results."""
    con = connect(url, statement_timeout, timeout)
    try:
        yield con
    finally:
        close_quietly(con)


def close_quietly(con) -> None:
    """Close `con` without raising, its socket and pg8000's buffered file over it included."""
    sock = _sockets.pop(con, None)
    try:
        con.close()
    except Exception:  # noqa: BLE001 - see connection()
        pass
    if sock is not None:
        sock.close_file()
        sock.close()


READ_MARGIN = 15  # seconds the client waits beyond the server's statement timeout


def set_read_timeout(con, seconds: float | None) -> None:
    """How long each socket read may wait: as long as the server may take, a statement timeout
    and a margin (the connect timeout would cut a statement short)."""
    sock = _sockets.get(con)
    if sock is not None:
        sock.settimeout(seconds)


def _seconds(postgres_interval: str) -> float:
    """'60s', '1500ms', '5min', '0' -> seconds (0 means no limit)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*", str(postgres_interval))
    if not match:
        raise ValueError(f"statement timeout {postgres_interval!r} is not like 60s or 1500ms")
    value, unit = float(match.group(1)), match.group(2) or "ms"  # PostgreSQL's default unit is ms
    return value * {"ms": 0.001, "s": 1, "min": 60, "h": 3600}[unit]
