"""The scrape kind: watched pages, their history and their alerts."""

from shared.core.kind import History, Kind, Migration, Option, Run
from shared.scrape import store
from shared.scrape.job import DEFAULT_EVERY, ScrapeJob


# The run imports its machinery when called: a cold start of one kind never loads the other's.
def _run(jobs: list[ScrapeJob], run: Run):
    from shared.scrape import run as scrape

    concurrency = run.options.get("concurrency")
    return scrape.run(jobs, run_key=run.run_key, deadline=run.deadline, prepare=run.prepare,
                      concurrency=scrape.parse_concurrency(concurrency, "--concurrency") if concurrency else None)


def _adhoc(url: str, name: str | None) -> dict:
    from shared.scrape import run as scrape

    return scrape.adhoc_table(url, name)


def _report(con, window):
    from shared.scrape import report

    return report.section(con, window)


KIND = Kind(
    name="scrape", job=ScrapeJob, command="scrape",
    summary="Check web pages and keep their history",
    # A 10-minute job must finish inside its window; 512 MB holds 48 parallel fetches.
    default_every=DEFAULT_EVERY, timeout=540, memory=512,
    run=_run, adhoc=_adhoc, shardable=True,
    migrations=tuple(Migration(version, sql) for version, sql in enumerate(store.MIGRATIONS, store.FIRST_VERSION))
    + tuple(Migration(version, sql) for version, sql in store.LATER_MIGRATIONS.items()),
    privileges=store.PRIVILEGES, last_runs=store.last_runs, report=_report,
    history=History(store.history_list, store.history_size, store.delete_target),
    options=(Option("--concurrency", "parallel fetches, 1-500 (default $SCRAPE_CONCURRENCY, else 48)"),),
)
