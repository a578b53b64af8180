"""The job kinds: one registered object per kind, read by everything else.

The jobs file's sections, the entry points' commands and Lambda handlers, the AWS plan (one
function per kind, its timeout and memory), the Heroku Scheduler entries, invoke-local and the
report all come from KINDS. A third kind is one more `register(Kind(...))` here, its package
in shared/, and its few-line module in functions/.

A kind's `run(jobs, run_key, deadline)` checks or runs its jobs and returns one Result per
job; `deadline` is a time.monotonic() value (or None) that no part of the run may pass.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from shared.refresh.job import ENV_KEYS, RefreshJob, table_from_environment
from shared.result import Result
from shared.scrape.job import ScrapeJob


@dataclass(frozen=True)
class Kind:
    name: str  # its jobs-file section, [[name]], and its name in the report and the plan
    job: type  # the frozen dataclass of one job: its fields are the keys a job may have
    command: str  # functions/<command>.py: `python -m functions.<command>` and `<...>.handler`
    summary: str  # one line for --help and the README
    default_every: str  # schedule when a job gives none: "10m", "1h" or "1d"
    timeout: int  # Lambda: seconds per invocation
    memory: int  # Lambda: MB
    run: Callable[[list, str | None, float | None], list[Result]]
    adhoc: Callable[[str, str | None], dict] | None = None  # a one-off target (--url) as a job table
    from_environment: Callable[[], dict | None] | None = None  # a job from variables, without a file
    environment_keys: dict[str, str] = field(default_factory=dict)  # variable -> key, for messages
    options: dict[str, str] = field(default_factory=dict)  # CLI flag -> the environment setting it overrides

    @property
    def handler(self) -> str:
        return f"functions.{self.command}.handler"


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    KINDS[kind.name] = kind
    return kind


def by_command(command: str) -> Kind:
    return next(kind for kind in KINDS.values() if kind.command == command)


# The runs import their machinery when called: a cold start of one kind never loads the other's.

def _run_scrape(jobs, run_key, deadline):
    from shared.scrape import run
    return run.run(jobs, run_key=run_key, deadline=deadline)


def _adhoc_scrape(url, name):
    from shared.scrape import run
    return run.adhoc_table(url, name)


def _run_refresh(jobs, run_key, deadline):
    from shared.refresh import run
    return run.run(jobs, run_key=run_key, deadline=deadline)


register(Kind(
    name="scrape", job=ScrapeJob, command="scrape",
    summary="Check web pages and keep their history",
    # A 10-minute job must finish inside its window; 512 MB holds 48 parallel fetches.
    default_every="10m", timeout=540, memory=512,
    run=_run_scrape, adhoc=_adhoc_scrape,
    options={"--concurrency": "SCRAPE_CONCURRENCY"},
))

register(Kind(
    name="refresh", job=RefreshJob, command="carto_refresh",
    summary="Run refresh statements on CARTO or PostgreSQL",
    # A refresh may poll a Batch API job for a long time.
    default_every="1d", timeout=900, memory=256,
    run=_run_refresh,
    from_environment=table_from_environment, environment_keys=ENV_KEYS,
))
