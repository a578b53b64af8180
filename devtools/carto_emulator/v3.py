"""CARTO 3's SQL API, `/v3/sql/{connection}/query` and `/job`, shaped as CARTO's docs show it.

- `Authorization: Bearer` with a token of `v3_tokens`, which acts as the user's master key.
  The connection name is not checked.
- `/query` (GET or POST; `q`, or `query` in a JSON body) answers
  `{"rows": [...], "schema": [{"name", "type"}], "meta": {...}}`. Errors carry `error` (a
  string, not v2's list) and maybe `hint`.
- A synchronous query stops at `v3_sync_limit` seconds (CARTO: one minute). What the client
  then gets is `v3_timeout_answer`: "504" (a gateway's plain-text 504), "error" (400, an
  `error` saying it timed out) or "none" (no answer at all: the client's read timeout ends it).
- POST `/job` (`query` or `q`) answers `{"jobId", "externalId", "status", ...}`. `externalId`
  is the warehouse's own id, a different value: `GET|DELETE /job/{jobId}` find the job, any
  other id is 404. Jobs run on the Batch API's worker with its status words (CARTO 3's own are
  unconfirmed); a failed job carries its reason in `error`.
"""

import json

from devtools.carto_emulator import batch, postgres
from devtools.carto_emulator.answers import HttpAnswer, NoAnswer
from devtools.carto_emulator.field_types import schema
from devtools.carto_emulator.sql_api import row

TIMEOUT_ANSWERS = ("504", "error", "none")
GATEWAY_TIMEOUT = "upstream request timeout"  # what the load balancer in front says, as text


def route(emulator, method: str, user: str, match, params: dict) -> tuple[int, dict]:
    """Answer a /v3/sql request of an authenticated user."""
    job_id = match.group("job_id")
    if not match.group("job"):
        if method == "DELETE":
            raise HttpAnswer(404, {"error": "not found"})
        return query(emulator, params)
    if job_id is None and method == "POST":
        payload = json.dumps(params)
        job = batch.submit(emulator, user, None, params.get("query") or params.get("q"), payload, api="v3")
        return 200, serialize(job)
    if job_id and method in ("GET", "DELETE"):
        with emulator.lock:
            job = batch.find(emulator, user, job_id, api="v3")
        if job is None:
            raise HttpAnswer(404, {"error": f"Job {job_id} not found"})
        if method == "DELETE":
            batch.cancel(emulator, job)
        with emulator.lock:
            return 200, serialize(job)
    raise HttpAnswer(404, {"error": "not found"})


def query(emulator, params: dict) -> tuple[int, dict]:
    statement = params.get("q") or params.get("query")
    if not statement:
        raise HttpAnswer(400, {"error": "You must indicate a sql query"})
    limit = emulator.v3_sync_limit
    try:
        result = postgres.run(emulator.database_url, statement, None, max(1, round(limit * 1000)),
                              emulator.type_names)
    except postgres.Unreachable:
        raise HttpAnswer(500, {"error": "cannot connect to the database"}) from None
    except postgres.DatabaseError as exc:
        raise _failed(emulator, exc) from None
    if result.error is not None:  # no 200-with-error here: v3 answers are not streamed
        raise _failed(emulator, result.error)
    return 200, {"rows": [row(result.columns, values) for values in result.rows],
                 "schema": schema(result.columns, emulator.type_names),
                 "meta": {"cacheHit": False, "totalBytesProcessed": "0", "location": "emulator"}}


def _failed(emulator, exc: Exception) -> Exception:
    """What to raise for a statement that failed: its error, or the sync limit's answer."""
    pg = postgres.pg_fields(exc)
    message = pg.get("M", str(exc))
    if postgres.is_timeout(message):
        if emulator.v3_timeout_answer == "none":
            return NoAnswer()
        if emulator.v3_timeout_answer == "error":
            return HttpAnswer(400, {"error": f"Query timed out: it ran longer than the {emulator.v3_sync_limit:g} s"
                                             " limit of synchronous queries",
                                    "hint": "Create a job instead (POST .../job) and poll it"})
        return HttpAnswer(504, GATEWAY_TIMEOUT)
    body = {"error": message}
    if "H" in pg:
        body["hint"] = pg["H"]
    return HttpAnswer(403 if "permission denied" in message else 400, body)


def serialize(job: batch.Job) -> dict:
    out = {"jobId": job.job_id, "externalId": job.external_id, "status": job.status, "query": job.query,
           "createdAt": job.created_at, "updatedAt": job.updated_at}
    if job.failed_reason is not None:
        out["error"] = job.failed_reason
    return out


def error_shape(body):
    """v3's `error` is one string: v2's list (from shared code: auth, rate limits, batch) joined."""
    if isinstance(body, dict) and isinstance(body.get("error"), list):
        return {**body, "error": "; ".join(str(e) for e in body["error"])}
    return body
