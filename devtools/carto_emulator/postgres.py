"""Running SQL on the PostgreSQL behind the emulator: a connection per request with its
statement timeout, the read-only role for requests without a master key, and rows streamed
from a cursor as CARTO's server streams them."""

from dataclasses import dataclass

import pg8000.native

from shared.core import db

PUBLIC_ROLE = "carto_emulator_public"  # what requests without a master key run as
FETCH_BATCH = 1000
DatabaseError = pg8000.native.DatabaseError


class Unreachable(Exception):
    """No connection to the database."""


@dataclass
class QueryResult:
    rows: list
    columns: list
    total_rows: int
    notices: list
    error: Exception | None = None  # raised after rows had streamed


def run(database_url: str, sql: str, role: str | None, timeout_ms: int | None,
        type_names: dict[int, str]) -> QueryResult:
    """Run `sql` as `role` (None: the owner) under a statement timeout (None or 0: none).
    Raises Unreachable, or DatabaseError for a statement that failed before any row.
    Fills `type_names` (oid -> name) on first use."""
    try:
        con = db.connect(database_url, statement_timeout=f"{timeout_ms}ms" if timeout_ms else "0")
    except ConnectionError:
        raise Unreachable() from None
    try:
        if role:
            con.run(f"SET ROLE {role}")
        if not type_names:
            type_names.update({oid: name for oid, name in con.run("SELECT oid::int, typname FROM pg_type")})
        return _run_streaming(con, sql)
    finally:
        con.close()


def _run_streaming(con, sql: str) -> QueryResult:
    """Run `sql` as CARTO streams it: through a cursor, so rows that arrived before an error
    are kept (CARTO then answers 200 with an `error`). What a cursor cannot hold runs whole."""
    single = ";" not in sql.strip().rstrip(";")
    if single:
        con.run("BEGIN")
        try:
            con.run(f"DECLARE carto_emulator_rows NO SCROLL CURSOR FOR {sql.strip().rstrip(';')}")
        except DatabaseError as exc:
            con.run("ROLLBACK")
            # 42601 syntax error / 0A000 not supported: not a plain query (INSERT, DDL, ...).
            if pg_fields(exc).get("C") not in ("42601", "0A000"):
                raise
            single = False
    if not single:
        con.notices.clear()
        rows = con.run(sql) or []
        return QueryResult(rows, con.columns or [], max(con.row_count or 0, len(rows)), list(con.notices))
    con.notices.clear()
    rows, columns = [], []
    try:
        while True:
            size = 1 if not rows else FETCH_BATCH
            batch = con.run(f"FETCH {size} FROM carto_emulator_rows")
            columns = con.columns or columns
            rows.extend(batch)
            if len(batch) < size:
                break
        con.run("COMMIT")
    except DatabaseError as exc:
        try:
            con.run("ROLLBACK")
        except DatabaseError:
            pass
        if not rows:
            raise
        return QueryResult(rows, columns, len(rows), list(con.notices), error=exc)
    return QueryResult(rows, columns, len(rows), list(con.notices))


def run_job_statements(database_url: str, statements: list[str], role: str | None, on_backend) -> None:
    """A batch job's statements, in order, without a statement timeout. `on_backend(pid)` is
    called first; when it answers False the job was cancelled meanwhile and nothing runs."""
    con = db.connect(database_url, statement_timeout="0")
    try:
        if not on_backend(con.run("SELECT pg_backend_pid()")[0][0]):
            return
        if role:
            con.run(f"SET ROLE {role}")
        for sql in statements:
            con.run(sql)
    finally:
        con.close()


def cancel_backend(database_url: str, pid: int) -> None:
    con = db.connect(database_url)
    try:
        con.run("SELECT pg_cancel_backend(:pid)", pid=pid)
    finally:
        con.close()


def ensure_public_role(database_url: str) -> None:
    con = db.connect(database_url)
    try:
        # Roles are cluster-wide: another emulator may have made it already.
        con.run(f"DO $$ BEGIN CREATE ROLE {PUBLIC_ROLE} NOLOGIN; "
                "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    finally:
        con.close()


def pg_fields(exc: Exception) -> dict:
    """PostgreSQL's error fields by code letter (M message, C SQLSTATE, D detail, H hint, W where)."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {"M": str(exc)}


def is_timeout(message: str) -> bool:
    return "statement timeout" in message or "canceling statement due to user request" in message
