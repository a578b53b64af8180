"""The kinds' runs as the entry adapter starts them: with the schema brought up to date on their
first connection (`Run.prepare`). Tests that call a run directly call it through these."""

from shared.app import schema
from shared.refresh import run as refresh_run
from shared.scrape import run as scrape_run


def scrape(jobs, **options):
    return scrape_run.run(jobs, prepare=schema.ensure, **options)


def refresh(jobs, **options):
    return refresh_run.run(jobs, prepare=schema.ensure, **options)
