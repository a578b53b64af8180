"""Refresh mode `postgres`: the statement runs straight on a PostgreSQL database (the job's
`database_url`, default $DATABASE_URL) under a statement timeout. A failed connection is
retried with backoff within the deadline; a failed statement never is."""

import logging
import random
import time

from shared.platform import db, log
from shared.refresh.job import RefreshJob
from shared.refresh.outcome import Outcome

logger = logging.getLogger(__name__)


class PostgresRefreshError(Exception):
    """The statement failed on PostgreSQL; the message is the line shown to users."""


def refresh(job: RefreshJob, deadline: float, timing) -> Outcome:
    import pg8000.native  # only this mode needs it (see shared.platform.db.connect)

    started = time.monotonic()
    con = _connect_with_retries(job, deadline, timing)
    timeout = min(job.statement_timeout, max(0.1, deadline - time.monotonic()))
    try:
        con.run(f"SET statement_timeout = {int(timeout * 1000)}")
        db.set_read_timeout(con, timeout + db.READ_MARGIN)
        answer = con.run(job.sql)
        rows, columns = con.row_count, con.columns
    except pg8000.native.DatabaseError as exc:
        raise PostgresRefreshError(_pg_reason(exc, timeout)) from None
    except (pg8000.native.InterfaceError, OSError) as exc:
        raise PostgresRefreshError(f"connection lost during the statement: {log.redact(str(exc))}") from None
    finally:
        db.close_quietly(con)
    value = None
    if answer and len(answer) == 1 and columns and len(columns) == 1 and answer[0][0] not in (None, ""):
        value = log.redact(f"{columns[0]['name']} = {answer[0][0]}"[:80])
    return Outcome("PostgreSQL", time.monotonic() - started, rows if rows is not None and rows >= 0 else None,
                   value=value)


def _connect_with_retries(job: RefreshJob, deadline: float, timing):
    tries = 0
    while True:
        tries += 1
        try:
            return db.connect(job.database_url)
        except db.ConnectionRefusedByServer:
            raise  # a wrong password or database name: no use trying again
        except db.DatabaseUnavailable as exc:
            wait = min(timing.backoff_max, timing.backoff_initial * 2 ** (tries - 1)) * random.uniform(0.5, 1.0)
            if time.monotonic() + wait > deadline:
                raise db.DatabaseUnavailable(f"{exc} (gave up after {tries} tries)") from None
            logger.warning("%s: %s; retrying in %.1f s", job.name, log.redact(str(exc)), wait)
            time.sleep(wait)


def _pg_reason(exc: Exception, timeout: float) -> str:
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {"M": str(exc)}
    code, message = fields.get("C", "?"), fields.get("M", str(exc))
    if code == "57014" and "statement timeout" in message:
        return f"statement timeout: stopped after {timeout:g} s (raise statement_timeout, or make the statement faster)"
    reason = f"SQLSTATE {code}: {message}"
    if fields.get("H"):
        reason += f" (hint: {fields['H']})"
    if fields.get("W"):
        reason += f" (where: {fields['W'].splitlines()[0]})"
    return log.redact(reason)
