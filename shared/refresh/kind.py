"""The refresh kind: a statement run on a schedule, on CARTO or PostgreSQL, and its run history."""

from shared.core.kind import History, Kind, Migration, Run
from shared.refresh import store
from shared.refresh.job import DEFAULT_EVERY, ENV_KEYS, RefreshJob, table_from_environment


# The run imports its machinery when called: a cold start of one kind never loads the other's.
def _run(jobs: list[RefreshJob], run: Run):
    from shared.refresh import run as refresh

    return refresh.run(jobs, run_key=run.run_key, deadline=run.deadline, prepare=run.prepare)


def _report(con, window):
    from shared.refresh import report

    return report.section(con, window)


KIND = Kind(
    name="refresh", job=RefreshJob, command="carto_refresh",
    summary="Run refresh statements on CARTO or PostgreSQL",
    # A refresh may poll a Batch API job for a long time.
    default_every=DEFAULT_EVERY, timeout=900, memory=256,
    run=_run,
    migrations=tuple(Migration(version, sql) for version, sql in enumerate(store.MIGRATIONS, store.FIRST_VERSION)),
    privileges=store.PRIVILEGES, last_runs=store.last_runs, report=_report,
    history=History(store.history_list, store.history_size, store.delete_job),
    from_environment=table_from_environment, environment_keys=ENV_KEYS,
)
