"""What a job kind is: one frozen record that everything above the kinds reads.

Each kind's package exports one `Kind` from its kind.py (shared/scrape/kind.py,
shared/refresh/kind.py); shared/app/kinds.py lists them. The jobs file's sections, the entry
points, the AWS plan, the Heroku Scheduler entries, the schema, the report and invoke-local all
come from these records, so a third kind is its own package plus one line in that list.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.core.result import Result


@dataclass(frozen=True)
class Run:
    """What the entry adapter hands a kind's run besides its jobs."""
    run_key: str | None = None  # idempotency key: a second run with this key repeats nothing
    deadline: float | None = None  # time.monotonic() by which every part of the run is over
    options: Mapping[str, str] = field(default_factory=dict)  # the kind's command-line options, by name
    # Brings the database's schema up to date and checks this user may write it (shared/app/
    # schema.py); the run calls it on its first connection.
    prepare: Callable[[object], None] | None = None


@dataclass(frozen=True)
class Migration:
    version: int  # the schema's version once applied: one sequence across all kinds
    sql: str


@dataclass(frozen=True)
class Option:
    """A command-line option of a kind's command, passed to its run by name (never through the
    environment)."""
    flag: str  # e.g. "--concurrency"
    help: str

    @property
    def name(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class History:
    """A kind's part of the history tools (`python -m functions.history list | delete`)."""
    # Its jobs' histories: (name, runs, changes or None, first run, last run, failure streak,
    # stored bytes) per job, by name.
    rows: Callable[[object], list]
    # What deleting job `name`'s history drops: (counts in words, stored bytes), None: no such job.
    size: Callable[[object, str], tuple[list[str], int] | None]
    delete: Callable[[object, str], None]  # drops it, in the caller's transaction


@dataclass(frozen=True)
class Kind:
    name: str  # its jobs-file section, [[name]], and its name in the report and the plan
    # The frozen dataclass of one job: its fields are the keys a job may have; its `secrets()`
    # names the values it holds that must never be shown (the jobs file registers them).
    job: type
    command: str  # functions/<command>.py: `python -m functions.<command>` and `<...>.handler`
    summary: str  # one line for --help and the README
    default_every: str  # schedule when a job gives none: "10m", "1h" or "1d"
    timeout: int  # Lambda: seconds per invocation
    memory: int  # Lambda: MB
    run: Callable[[list, Run], list[Result]]  # one Result per job, in order
    migrations: tuple[Migration, ...] = ()  # the DDL of its tables
    privileges: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # table -> what a run needs
    shardable: bool = False  # many jobs per schedule: the AWS dispatcher splits them into shards
    adhoc: Callable[[str, str | None], dict] | None = None  # a one-off target (--url) as a job table
    from_environment: Callable[[], dict | None] | None = None  # a job from variables, without a file
    environment_keys: Mapping[str, str] = field(default_factory=dict)  # variable -> key, for messages
    options: tuple[Option, ...] = ()  # command-line options its run takes
    # Its section of the history report: (con, shared.core.report.Window) -> Section.
    report: Callable | None = None
    history: History | None = None  # its part of `functions.history list` and `delete`
    # When each named job last ran, from its kind's tables: (con, names) -> {name: datetime}; the
    # entry adapter's overdue check reads every kind's through it.
    last_runs: Callable[[object, list], dict] | None = None

    @property
    def handler(self) -> str:
        return f"functions.{self.command}.handler"
