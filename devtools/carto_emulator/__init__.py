"""A local stand-in for CARTO's SQL API, for tests and `make invoke-local`. Not deployed.

    emulator = CartoEmulator(database_url, users={"demo": "demo-key"})
    base = emulator.start()                       # http://127.0.0.1:PORT, a free loopback port
    emulator.sql_url("demo")                      # {base}/user/demo/api/v2/sql
    emulator.stop()

    python -m devtools.carto_emulator [--user demo --api-key KEY] [--statement-timeout-ms 5000]

It answers the subset a refresh job uses by running the SQL on a real PostgreSQL, shaped as
CARTO's answers are documented (see the project's CARTO reference notes). One module a concern:

- server.py: settings and state, the loopback HTTP server, routing; every request is kept in
  `requests` (method, raw path with query string, headers, body) so tests can check what a
  client really sent.
- auth.py: API keys (v2), Bearer tokens (v3), per-user rate limits.
- sql_api.py: v2 `/api/v{1,2}/sql`, CARTO's bodies and statuses.
- batch.py: the Batch API (`{sql}/job`) and the job worker CARTO 3's jobs share.
- v3.py: CARTO 3's `/v3/sql/{connection}/query` and `/job`.
- postgres.py: running the SQL (roles, statement timeouts, rows streamed from a cursor).
- field_types.py: PostgreSQL types as CARTO names them (`fields`, `schema`).
- answers.py: error answers, "no answer at all", JSON of PostgreSQL values.
"""

from devtools.carto_emulator.server import CartoEmulator

__all__ = ["CartoEmulator"]
