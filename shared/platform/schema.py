"""The database schema: every concern's migrations, applied in one fixed order.

Each concern keeps its own DDL beside its SQL (shared/scrape/storage.py, shared/refresh/
history.py); this list is the order they were added in, which is the schema's version. A new
migration goes at the end.
"""

from shared.refresh import history
from shared.scrape import storage

MIGRATIONS = [
    *storage.MIGRATIONS,  # 1-3: scrape targets, contents, check times, errors, validators
    *history.MIGRATIONS,  # 4: refresh jobs and their runs
]


def migrate(con) -> int:
    """Bring the schema up to date; safe to run concurrently and repeatedly. Returns the version."""
    con.run("BEGIN")
    try:
        # One migrator at a time, even when two first runs start together.
        con.run("SELECT pg_advisory_xact_lock(hashtext('scheduled-jobs migrations'))")
        con.run("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        current = con.run("SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0]
        for version, sql in enumerate(MIGRATIONS, 1):
            if version > current:
                con.run(sql)
                con.run("INSERT INTO schema_migrations (version) VALUES (:v)", v=version)
        con.run("COMMIT")
    except Exception:
        con.run("ROLLBACK")
        raise
    return len(MIGRATIONS)


def ensure(con) -> None:
    """Create or migrate the schema unless it is already current (one cheap query)."""
    exists = con.run("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0]
    if exists and con.run("SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0] >= len(MIGRATIONS):
        return
    migrate(con)
