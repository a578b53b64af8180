"""The database schema: every kind's migrations, applied in the order of their versions.

Each kind keeps its tables' DDL in its store.py and lists it on its `Kind`, and the app keeps its
own in shared/app/store.py (versions numbered in one sequence: scrape's are 1-3 and 5, refresh's 4,
the app's 6 and 7); the schema's version is the newest applied. A new migration takes the next free version, in its kind's store.py.

Before a run writes anything, `ensure()` checks that it can: a schema newer than this code, a
read-only database, a user without the privileges, or the seed article's own `scraps` table
where our view goes (adopt it: shared/app/adopt.py) ends the run at once with one line and
exit 2 (shared/core/db.DatabaseRefused), before any page is fetched or CARTO is called. The
entry adapter hands `ensure` to each run as `Run.prepare`.
"""

from shared.app import store as app_store
from shared.app.kinds import KINDS
from shared.core.db import DatabaseRefused, classify, transaction
from shared.core.kind import Migration
from shared.scrape import store as scrape_store


def _migrations() -> list[str]:
    """Every kind's migrations and the app's own (shared/app/store.py), by version."""
    app = [Migration(version, sql) for version, sql in app_store.MIGRATIONS.items()]
    found = sorted([m for kind in KINDS.values() for m in kind.migrations] + app, key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must run 1..N without gaps: {[m.version for m in found]}")
    return [m.sql for m in found]


MIGRATIONS = _migrations()
# What a run needs. The app's own tables (run alerts, overdue jobs) are not required: without
# them those degrade (shared/app/monitor.py), the run itself does not.
NEEDED = {table: privileges for kind in KINDS.values() for table, privileges in kind.privileges.items()}

# Which of (table, privilege) the current user lacks.
CANNOT = """
SELECT t, p FROM unnest(CAST(:tables AS text[]), CAST(:privileges AS text[])) AS n(t, p)
WHERE to_regclass(t) IS NOT NULL AND NOT has_table_privilege(t, p)
"""


def migrate(con) -> int:
    """Bring the schema up to date; safe to run concurrently and repeatedly. Returns the version.
    Raises DatabaseRefused (exit 2) when it cannot: it never reports success on a database it
    did not bring up to date."""
    try:
        with transaction(con):
            migrate_within(con)
    except DatabaseRefused:
        raise
    except Exception as exc:
        raise classify(exc, "migrating the schema") from None
    return len(MIGRATIONS)


def lock(con) -> None:
    """One migrator (or adopter) at a time, even when two first runs start together; held until
    the transaction ends."""
    con.run("SELECT pg_advisory_xact_lock(hashtext('scheduled-jobs migrations'))")


def migrate_within(con) -> None:
    """migrate() inside the caller's transaction (adoption renames the seed's table first)."""
    lock(con)
    con.run("CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
    current = _newest(con)
    if current > len(MIGRATIONS):
        _refuse_newer(con)
    if current == 0:  # migration 1 creates the view `scraps`: is the name taken?
        _refuse_foreign_scraps(con)
    for version, sql in enumerate(MIGRATIONS, 1):
        if version > current:
            con.run(sql)
            con.run("INSERT INTO schema_migrations (version) VALUES (:v)", v=version)


def ensure(con) -> None:
    """Create or migrate the schema unless it is current (one cheap query), then check that
    this user may write it."""
    try:
        with transaction(con):  # one round of reads, one transaction
            exists = con.run("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0]
            newest = _newest(con) if exists else 0
        if newest < len(MIGRATIONS):
            migrate(con)
        elif newest > len(MIGRATIONS):
            _refuse_newer(con)
        with transaction(con):
            read_only = con.run("SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'")[0][0]
            pairs = [(table, privilege) for table, privileges in NEEDED.items() for privilege in privileges]
            missing = con.run(CANNOT, tables=[t for t, _ in pairs], privileges=[p for _, p in pairs])
    except DatabaseRefused:
        raise
    except Exception as exc:
        raise classify(exc, "checking the schema") from None
    if read_only:
        raise DatabaseRefused("the database is read-only (a replica, or default_transaction_read_only):"
                              " point DATABASE_URL at the primary")
    if missing:
        lacking = ", ".join(f"{privilege} on {table}" for table, privilege in missing)
        raise DatabaseRefused(f"the database user lacks privileges a run needs ({lacking}): grant them,"
                              " or use the owner's DATABASE_URL")


def _refuse_foreign_scraps(con) -> None:
    """The seed article's readers have its `scraps` table (its SQL, verbatim) in the database they
    point us at: say what is there and how to adopt it, rather than fail on `relation "scraps"
    already exists`."""
    shape = scrape_store.scraps_shape(con)
    if shape is None:
        return
    if shape.is_seed:
        rows, times = scrape_store.seed_counts(con)
        raise DatabaseRefused(
            f"the database holds the seed article's table scraps ({rows:,} rows, {times:,} check times) where this"
            " project keeps its history: adopt it into a [[scrape]] job with `python -m functions.migrate"
            f" --adopt-seed NAME` (the table is kept, renamed {scrape_store.SEED_KEPT}), after removing the article's"
            " own Scheduler job: its INSERT into scraps fails once scraps is our view")
    raise DatabaseRefused(
        f"the database has a {shape.kind} named scraps ({', '.join(shape.columns)}) that is not this project's:"
        " rename it, or point DATABASE_URL at another database")


def _newest(con) -> int:
    return con.run("SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0]


def _refuse_newer(con) -> None:
    raise DatabaseRefused(f"the database schema is at version {_newest(con)}, newer than this code's"
                          f" {len(MIGRATIONS)}: deploy the newer code (or restore an older database)")
