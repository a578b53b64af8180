"""Refresh mode `postgres`: the statement runs straight on a PostgreSQL database (the job's
`database_url`, default $DATABASE_URL) under a statement timeout. A failed connection is
retried with backoff within the deadline; a failed statement never is.

A refresh reports how many rows the statement returned and, for a one-row one-column answer,
its value: it reads no more than that. A query (SELECT, VALUES, TABLE, WITH ... SELECT) runs
through a cursor in a transaction: FETCH 2 rows, MOVE past the rest (counted by the server,
never sent), COMMIT, so what the statement changed persists. A data-modifying statement with
RETURNING runs inside `WITH ... SELECT *, count(*) OVER () ... LIMIT 2`, which sends two rows
and the count. Anything else (CALL, DO, REFRESH MATERIALIZED VIEW, INSERT without RETURNING,
several statements) returns no rows, or few, and runs as it is; one that leaves a transaction
open (BEGIN without COMMIT) fails, since closing the connection rolls back what it did.

The time budget bounds it all: connecting (within connect_timeout and what is left), and the
statement, by the server's statement_timeout and, should the statement lift that (SET
statement_timeout = 0) or the server stop answering, by a timer that cancels it at the deadline
and shuts the connection (_Guard).
"""

import logging
import os
import random
import socket
import struct
import threading
import time

from shared.core import db, log
from shared.refresh.answer import one_line
from shared.refresh.job import RefreshJob
from shared.refresh.outcome import Outcome

logger = logging.getLogger(__name__)
CURSOR = "refresh_rows"
TOTAL_COLUMN = "refresh_total_rows"
# What PostgreSQL answers when a statement cannot go in a cursor or a WITH: a syntax error
# (CALL, DO, INSERT ... in DECLARE), "feature not supported" (data-modifying WITH, a WITH query
# without RETURNING). Raised while the statement is parsed and planned, before it runs.
CANNOT_WRAP = ("42601", "0A000")


# What one message from the server may cost in memory: a row bigger than ROW_BYTES is counted
# and its values not read (a refresh reports a value of 80 characters at most); of a bigger
# notice or error, its first MESSAGE_HEAD bytes.
ROW_BYTES = 1024 * 1024
MESSAGE_HEAD = 64 * 1024
# The server's statement timeout ends the statement at the deadline with its own error; the
# guard steps in this much later, only when that did not happen.
GUARD_GRACE = 1.0
CANCEL_REQUEST_CODE = 80877102  # PostgreSQL's CancelRequest


class PostgresRefreshError(Exception):
    """The statement failed on PostgreSQL; the message is the line shown to users."""


def refresh(job: RefreshJob, deadline: float, timing) -> Outcome:
    import pg8000.native  # only this mode needs it (see shared.core.db.connect)

    started = time.monotonic()
    con = _connect_with_retries(job, deadline, timing)
    timeout = min(job.statement_timeout, max(0.1, deadline - time.monotonic()))
    ends = time.monotonic() + timeout
    guard = _Guard(con, job.database_url, ends + GUARD_GRACE)
    _bound_reads(con)
    try:
        db.set_read_timeout(con, timeout + db.READ_MARGIN)
        rows, columns, first = _run(con, job.sql, ends)
    except pg8000.native.DatabaseError as exc:
        if guard.fired:
            raise PostgresRefreshError(_stopped(time.monotonic() - started, timeout, job)) from None
        raise PostgresRefreshError(_pg_reason(exc, timeout, job)) from None
    except (pg8000.native.InterfaceError, OSError) as exc:
        if guard.fired:
            raise PostgresRefreshError(_stopped(time.monotonic() - started, timeout, job)) from None
        if isinstance(exc, OSError) or "network error" in str(exc):  # pg8000's words for a socket's failure
            raise PostgresRefreshError(f"connection lost during the statement: {log.redact(str(exc))}") from None
        raise PostgresRefreshError(f"the statement cannot be run this way: {log.redact(str(exc))}") from None
    finally:
        guard.stop()
        db.close_quietly(con)
    value = None
    if rows == 1 and first and columns and len(columns) == 1 and first[0][0] not in (None, ""):
        value = one_line(f"{columns[0]['name']} = {first[0][0]}", 80)  # redacted, then cut
    return Outcome("PostgreSQL", time.monotonic() - started, rows if rows is not None and rows >= 0 else None,
                   value=value)


def _run(con, sql: str, ends: float) -> tuple[int | None, list | None, list]:
    """Run `sql`; (rows it returned or changed, its columns, its first rows, two at most)."""
    statement = sql.strip().rstrip(";").rstrip()
    if ";" not in statement:  # one statement (a ";" in a literal or comment: run as it is)
        done = _through_cursor(con, statement, ends)
        if done is None:
            done = _dml_returning(con, statement, ends)
        if done is not None:
            return done
    _limit(con, ends)
    answer = con.run(sql)  # no rows to speak of: see the module's docstring
    if getattr(con, "_transaction_status", None) == b"T":  # pg8000's record of the server's ReadyForQuery
        # Closing the connection would roll it back silently, and the line would say "ok".
        _rollback(con)
        raise PostgresRefreshError("the statement left a transaction open (BEGIN without COMMIT): it was rolled"
                                   " back, so nothing it changed was kept; end it with COMMIT")
    return con.row_count, con.columns, (answer or [])[:2]


def _through_cursor(con, statement: str, ends: float):
    """A query through a cursor: two rows fetched, the rest counted where they are. None when
    `statement` is not a query."""
    con.run("BEGIN")
    try:
        con.run("SET LOCAL cursor_tuple_fraction = 1")  # plan for all rows, as a plain run would
        _limit(con, ends)
        try:
            con.run(f"DECLARE {CURSOR} NO SCROLL CURSOR FOR {statement}")
        except Exception as exc:
            if db.sqlstate(exc) in CANNOT_WRAP:
                _rollback(con)
                return None
            raise
        _limit(con, ends)
        first = con.run(f"FETCH 2 FROM {CURSOR}") or []
        columns = con.columns
        moved = 0
        if len(first) == 2:
            _limit(con, ends)
            con.run(f"MOVE FORWARD ALL IN {CURSOR}")
            moved = max(0, con.row_count or 0)
        con.run("COMMIT")
    except BaseException:
        _rollback(con)
        raise
    return len(first) + moved, columns, first


def _dml_returning(con, statement: str, ends: float):
    """INSERT, UPDATE or DELETE ... RETURNING: two of its rows and how many (run once, to
    completion, as a data-modifying WITH always is). None when `statement` is not one."""
    _limit(con, ends)
    try:
        answer = con.run(f"WITH {CURSOR} AS ({statement}\n) SELECT *, count(*) OVER () AS {TOTAL_COLUMN}"
                         f" FROM {CURSOR} LIMIT 2")
    except Exception as exc:
        if db.sqlstate(exc) in CANNOT_WRAP:
            return None
        raise
    columns = (con.columns or [])[:-1]
    return (answer[0][-1] if answer else 0), columns, [row[:-1] for row in answer or []]


def _limit(con, ends: float) -> None:
    """What is left of the statement timeout, for the next step."""
    con.run(f"SET statement_timeout = {max(1, int((ends - time.monotonic()) * 1000))}")


def _rollback(con) -> None:
    try:
        con.run("ROLLBACK")
    except Exception:  # noqa: BLE001 - the error that led here is the one to report
        pass


def _connect_with_retries(job: RefreshJob, deadline: float, timing):
    tries = 0
    while True:
        tries += 1
        try:
            # pg8000's timeout bounds each socket operation while connecting: a server that
            # accepts and never answers costs connect_timeout, or what is left of the budget.
            return db.connect(job.database_url, timeout=max(0.5, min(job.connect_timeout, deadline - time.monotonic())))
        except db.ConnectionRefusedByServer:
            raise  # a wrong password or database name: no use trying again
        except db.DatabaseUnavailable as exc:
            wait = min(timing.backoff_max, timing.backoff_initial * 2 ** (tries - 1)) * random.uniform(0.5, 1.0)
            if time.monotonic() + wait > deadline:
                raise db.DatabaseUnavailable(f"{exc} (gave up after {tries} tries)") from None
            logger.warning("%s: %s; retrying in %.1f s", job.name, log.redact(str(exc)), wait)
            time.sleep(wait)


def _pg_reason(exc: Exception, timeout: float, job: RefreshJob) -> str:
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {"M": str(exc)}
    code, message = fields.get("C", "?"), fields.get("M", str(exc))
    if code == "57014" and "statement timeout" in message:
        if timeout < job.statement_timeout:  # the time budget was the nearer limit
            return _stopped(timeout, timeout, job)
        return f"statement timeout: stopped after {timeout:g} s (raise statement_timeout, or make the statement faster)"
    reason = f"SQLSTATE {code}: {message}"
    if fields.get("H"):
        reason += f" (hint: {fields['H']})"
    if fields.get("W"):
        reason += f" (where: {fields['W'].splitlines()[0]})"
    return log.redact(reason)


def _stopped(seconds: float, timeout: float, job: RefreshJob) -> str:
    """Why a statement was stopped at its limit: the time budget, or the statement timeout."""
    if timeout < job.statement_timeout:
        return f"the time budget ran out during the statement: stopped after {seconds:.1f} s"
    return (f"statement timeout: stopped after {seconds:.1f} s (raise statement_timeout, or make the"
            " statement faster)")


def _bound_reads(con) -> None:
    """Make the connection read at most ROW_BYTES of a row and MESSAGE_HEAD of a notice or an
    error, whatever the statement returns (a single value may be up to 1 GB; pg8000 reads each
    message whole, then decodes it: a 200 MB value cost 840 MB). This is pg8000's own loop over
    the server's messages, pg8000.core.Connection.handle_messages, with those limits: the
    version is pinned (requirements.txt); another one keeps its own loop."""
    try:
        from pg8000 import core

        read, unpack, ready = core._read, core.ci_unpack, core.READY_FOR_QUERY
        data_row, cut = core.DATA_ROW, (core.NOTICE_RESPONSE, core.ERROR_RESPONSE)
        con.message_types, con._sock  # noqa: B018 - present in the pinned version
    except (ImportError, AttributeError):
        return

    def skip(size: int) -> None:
        while size > 0:
            size -= len(read(con._sock, min(size, MESSAGE_HEAD)))

    def handle_messages(context):
        code = None
        while code != ready:
            code, length = unpack(read(con._sock, 5))
            size = length - 4
            if size > ROW_BYTES and code == data_row:
                count = read(con._sock, 2)  # the row's columns, each then given as NULL
                skip(size - 2)
                data = count + b"\xff\xff\xff\xff" * struct.unpack("!h", count)[0]
            elif size > MESSAGE_HEAD and code in cut:
                data = read(con._sock, MESSAGE_HEAD) + b"\x00\x00"  # the cut field, and the message, ended
                skip(size - MESSAGE_HEAD)
            else:
                data = read(con._sock, size)
            con.message_types[code](data, context)
        if context.error is not None:
            raise context.error

    con.handle_messages = handle_messages


class _Guard:
    """Ends a statement that outlives the deadline: the server's statement timeout normally does,
    but a statement may lift it (SET statement_timeout = 0, a function's SET clause) and a server
    may stop answering. At `ends` (monotonic), a timer asks the server to cancel the statement
    (PostgreSQL's CancelRequest, on a connection of its own) and shuts the socket, which ends the
    blocked read at once."""

    def __init__(self, con, url: str | None, ends: float):
        self.con, self.url, self.fired = con, url, False
        self.timer = threading.Timer(max(0.0, ends - time.monotonic()), self.fire)
        self.timer.daemon = True
        self.timer.start()

    def fire(self) -> None:
        self.fired = True
        try:
            self._cancel()
        except Exception as exc:  # noqa: BLE001 - best effort: the socket is shut all the same
            logger.debug("cancel request failed: %s", log.redact(str(exc)))
        sock = getattr(self.con, "_usock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _cancel(self) -> None:
        key = getattr(self.con, "_backend_key_data", None)  # the process id and secret the server gave
        if not key:
            return
        where = db.parse_url(self.url or os.environ.get("DATABASE_URL", ""))
        if where.socket_dir:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(2)
            sock.connect(f"{where.socket_dir}/.s.PGSQL.{where.port}")
        else:
            sock = socket.create_connection((where.host, where.port), timeout=2)
        with sock:
            sock.sendall(struct.pack("!ii", 8 + len(key), CANCEL_REQUEST_CODE) + key)
            sock.recv(1)  # the server closes the connection once it has read the request

    def stop(self) -> None:
        self.timer.cancel()
