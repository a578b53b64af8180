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
statement, by the server's statement_timeout set to what is left and, should the statement lift
that (SET statement_timeout = 0, a function's SET clause) or the server stop answering, by the
deadline watch (shared.core.deadline): a moment after the deadline it asks the server, from a
second connection, to cancel the statement (pg_cancel_backend) and shuts the connection.
"""

import logging
import random
import time

from shared.core import db, log, pgwire
from shared.core.deadline import watching
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
LIMITS = pgwire.Limits(row_bytes=ROW_BYTES, message_bytes=MESSAGE_HEAD)
# The server's statement timeout ends the statement at the deadline with its own error; the
# watch steps in this much later, only when that did not happen.
GUARD_GRACE = 1.0
CANCEL_TIMEOUT = 2.0  # seconds the cancelling connection may take


class PostgresRefreshError(Exception):
    """The statement failed on PostgreSQL; the message is the line shown to users."""


def refresh(job: RefreshJob, deadline: float, timing) -> Outcome:
    import pg8000.native  # only this mode needs it (see shared.core.db.connect)

    started = time.monotonic()
    con = _connect_with_retries(job, deadline, timing)
    try:
        pid = con.run("SELECT pg_backend_pid()")[0][0]  # for a cancel from another connection
        timeout = min(job.statement_timeout, max(0.1, deadline - time.monotonic()))
        ends = time.monotonic() + timeout
        with watching(ends + GUARD_GRACE, on_expire=lambda: _cancel(job.database_url, pid)) as watch:
            db.watch(con)
            try:
                db.set_read_timeout(con, timeout + db.READ_MARGIN)
                rows, columns, first = _run(con, job.sql, ends)
            except pg8000.native.DatabaseError as exc:
                if watch.expired:
                    raise PostgresRefreshError(_stopped(time.monotonic() - started, timeout, job)) from None
                raise PostgresRefreshError(_pg_reason(exc, timeout, job)) from None
            except (pg8000.native.InterfaceError, OSError) as exc:
                if watch.expired:
                    raise PostgresRefreshError(_stopped(time.monotonic() - started, timeout, job)) from None
                if isinstance(exc, OSError) or "network error" in str(exc):  # pg8000's words for a socket's failure
                    raise PostgresRefreshError(f"connection lost during the statement: {log.redact(str(exc))}") from None
                raise PostgresRefreshError(f"the statement cannot be run this way: {log.redact(str(exc))}") from None
    finally:
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
    row_count, columns = con.row_count, con.columns
    if _in_transaction(con):
        # Closing the connection would roll it back silently, and the line would say "ok".
        _rollback(con)
        raise PostgresRefreshError("the statement left a transaction open (BEGIN without COMMIT): it was rolled"
                                   " back, so nothing it changed was kept; end it with COMMIT")
    return row_count, columns, (answer or [])[:2]


def _in_transaction(con) -> bool:
    """Whether the statement left a transaction open. Outside one, each statement is a
    transaction of its own, whose start is the statement's (PostgreSQL's documented rule)."""
    try:
        return not con.run("SELECT transaction_timestamp() = statement_timestamp()")[0][0]
    except Exception as exc:
        if db.sqlstate(exc) == "25P02":  # "current transaction is aborted": one is open
            return True
        raise


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
            return db.connect(job.database_url, timeout=max(0.5, min(job.connect_timeout, deadline - time.monotonic())),
                              limits=LIMITS)
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


def _cancel(url: str | None, pid: int) -> None:
    """Ask the server to cancel backend `pid`'s statement, from a connection of its own (the
    deadline watch calls this just before it shuts the statement's socket)."""
    try:
        with db.connection(url, timeout=CANCEL_TIMEOUT) as con:
            con.run("SELECT pg_cancel_backend(:pid)", pid=pid)
    except Exception as exc:  # noqa: BLE001 - best effort: the socket is shut all the same
        logger.debug("cancelling the statement failed: %s", log.redact(str(exc)))
