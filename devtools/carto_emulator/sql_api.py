"""v2's synchronous SQL API, `/api/v{1,2}/sql`, answered as CARTO's open-source server does.

- Success `{"rows", "time", "fields", "total_rows"}` (+ `notices`/`warnings`), fields typed with
  CARTO's mapping. Errors `{"error": [msg], "context"?, "detail"?, "hint"?}`, 400 unless the
  message says "permission denied" (403); database unreachable 500; missing `q` 400.
- Each request runs under `statement_timeout_ms`; hitting it answers 429 without Retry-After,
  `"context": "limit", "detail": "datasource"`.
- An error after the first row keeps status 200 and appends `"error"` to the body (e.g.
  `SELECT 100 / (n - 3) FROM generate_series(1, 5) n`).
"""

import time

from devtools.carto_emulator import auth, postgres
from devtools.carto_emulator.answers import HttpAnswer
from devtools.carto_emulator.field_types import fields

TIMEOUT_MESSAGE = ("You are over platform's limits: SQL query timeout error. Refactor your query before"
                   " running again or contact CARTO support for more details.")


def sql(emulator, user: str, headers, params: dict) -> tuple[int, dict]:
    role = auth.authenticate(emulator, user, headers, params)
    statement = params.get("q")
    if not statement:
        raise HttpAnswer(400, {"error": ["You must indicate a sql query"]})
    fmt = params.get("format") or "json"
    if fmt != "json":
        raise HttpAnswer(400, {"error": [f"Invalid format: {fmt}"]})
    started = time.monotonic()
    try:
        result = postgres.run(emulator.database_url, statement, role, emulator.statement_timeout_ms,
                              emulator.type_names)
    except postgres.Unreachable:
        raise HttpAnswer(500, {"error": ["cannot connect to the database"]}) from None
    except postgres.DatabaseError as exc:
        raise HttpAnswer(*error_body(exc)) from None
    body = {"rows": [row(result.columns, values) for values in result.rows],
            "time": round(time.monotonic() - started, 3),
            "fields": fields(result.columns, emulator.type_names),
            "total_rows": result.total_rows}
    if result.error is not None:
        # Rows had streamed: the status stays 200 and the error is appended (CARTO's json format).
        body["error"] = error_body(result.error)[1]["error"]
    for severity, messages in group_notices(result.notices).items():
        body[severity] = messages
    return 200, body


def error_body(exc: Exception) -> tuple[int, dict]:
    """The status and body of a failed statement."""
    pg = postgres.pg_fields(exc)
    message = pg.get("M", str(exc))
    if postgres.is_timeout(message):
        return 429, {"error": [TIMEOUT_MESSAGE], "context": "limit", "detail": "datasource"}
    body = {"error": [message]}
    for key, code in (("context", "W"), ("detail", "D"), ("hint", "H")):
        if code in pg:
            body[key] = pg[code]
    return (403 if "permission denied" in message else 400), body


def group_notices(notices) -> dict:
    """{"notices": [...], "warnings": [...]}: CARTO keys messages by lowercased severity + "s"."""
    grouped: dict[str, list] = {}
    for notice in notices:  # pg8000 keeps each notice's fields as bytes, keyed by field code
        pg = {k.decode(): v.decode("utf-8", "replace") for k, v in notice.items() if k}
        severity = (pg.get("V") or pg.get("S") or "notice").lower() + "s"
        grouped.setdefault(severity, []).append(pg.get("M", ""))
    return grouped


def row(columns, values) -> dict:
    return {c["name"]: v for c, v in zip(columns, values)}
