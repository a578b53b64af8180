"""The jobs file: one TOML file describing every job, one table per job.

    [[scrape]]                 # the section names the job's kind (shared/app/kinds.py)
    name = "council-agenda"
    url = "https://example.org/agenda"

The jobs come from $JOBS_TOML (the text itself: a Heroku config var), else $JOBS_FILE, else
./jobs.toml. Reading the file checks only what concerns the whole file (TOML, sections, names);
each job is built (its `${VAR}`s expanded, its keys checked) only when a run uses it, so one
job's unset variable or bad key never stops another job. Every mistake is a `ConfigError`
naming the file, the job and the key.
"""

import os
import re
import tomllib
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from shared.core import keys, log, schedule
from shared.core.errors import ConfigError
from shared.core.names import NAME_RULE, valid_name

DEFAULT_JOBS_FILE = "jobs.toml"
# ${VAR} is the environment's VAR; $${VAR} is the literal text ${VAR} (how adopted values that
# happen to hold one are written, so no variable is ever read into them).
_ENV_REF = re.compile(r"(\$?)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Entry:
    """One job's table as written, not yet built."""
    kind: str
    name: str
    table: dict
    where: str  # for messages: "jobs.toml: [[scrape]] job 'agenda'"
    variables: tuple[tuple[str, str], ...] = ()  # key -> environment variable, for a job from the environment


def jobs_source() -> str:
    """Where the jobs come from, for messages: $JOBS_TOML or the jobs file's path."""
    return "$JOBS_TOML" if os.environ.get("JOBS_TOML") else str(jobs_file_path())


def jobs_file_path() -> Path:
    return Path(os.environ.get("JOBS_FILE") or DEFAULT_JOBS_FILE)


def has_jobs_file() -> bool:
    return bool(os.environ.get("JOBS_TOML")) or jobs_file_path().exists()


def entries(path: Path | None = None) -> list[Entry]:
    """Every job of the jobs file, unbuilt, after the checks that concern the whole file."""
    from shared.app.kinds import KINDS

    data, source = _read_toml(path)
    found = []
    for kind, tables in data.items():
        if kind not in KINDS:
            raise ConfigError(f"{source}: unknown section [[{kind}]] (known: {', '.join(KINDS)})")
        if not isinstance(tables, list):
            raise ConfigError(f"{source}: {kind} must be written [[{kind}]], one table per job")
        seen = set()
        for index, table in enumerate(tables, 1):
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [[{kind}]] #{index} must be a table of keys, written [[{kind}]]")
            name = table.get("name")
            if name is None:
                raise ConfigError(f"{source}: [[{kind}]] #{index}: missing required key 'name'")
            if not isinstance(name, str):
                raise ConfigError(f"{source}: [[{kind}]] #{index}: key 'name' must be a string")
            if not valid_name(name):
                raise ConfigError(f"{source}: [[{kind}]] job {name[:100]!r}: name {NAME_RULE}")
            if name in seen:
                raise ConfigError(f"{source}: two [[{kind}]] jobs are named {name!r}")
            seen.add(name)
            found.append(Entry(kind, name, table, f"{source}: [[{kind}]] job {name!r}"))
    return found


MAX_JOBS_FILE_BYTES = 10 * 1024 * 1024  # thousands of jobs; more is not a jobs file


_parsed: tuple[str, dict] | None = None  # the last jobs file's text and its tables (read-only)


def _read_toml(path: Path | None) -> tuple[dict, str]:
    if path is None and os.environ.get("JOBS_TOML"):
        text, source = os.environ["JOBS_TOML"], "$JOBS_TOML"
    else:
        path = path or jobs_file_path()
        try:
            with path.open("rb") as stream:
                raw = stream.read(MAX_JOBS_FILE_BYTES + 1)
            if len(raw) > MAX_JOBS_FILE_BYTES:
                raise ConfigError(f"{path}: larger than {MAX_JOBS_FILE_BYTES // 2**20} MB: not a jobs file")
            text, source = raw.decode("utf-8"), str(path)
        except FileNotFoundError:
            raise ConfigError(f"{path}: jobs file not found (set JOBS_FILE or create {DEFAULT_JOBS_FILE})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the jobs file: {exc}") from None
    global _parsed
    if _parsed is not None and _parsed[0] == text:  # read again after the run (overdue jobs): parsed once
        return _parsed[1], source
    try:
        data = tomllib.loads(text)
        _parsed = (text, data)
        return data, source
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and tables by recursion
        raise ConfigError(f"{source}: not a jobs file: values nested too deeply") from None


def build(entry: Entry):
    """The job dataclass of one entry: `${VAR}`s expanded, keys and values checked. Every secret
    it holds is registered for redaction here, not by the dataclass: what a ${VAR} brings in (as
    it is expanded), then what the job's `secrets()` names and its notification URLs' tokens.
    ConfigError names the file, job and key."""
    from shared.app.kinds import KINDS

    cls = KINDS[entry.kind].job
    known = {f.name: f for f in fields(cls)}
    try:
        for key in entry.table:
            if key not in known:
                raise ValueError(f"unknown key {key!r} (known: {', '.join(known)})")
        for key, spec in known.items():
            if key not in entry.table and spec.default is MISSING and spec.default_factory is MISSING:
                raise ValueError(f"missing required key {key!r}")
        job = cls(**keys.as_tuples(cls, {key: _expand(value, key) for key, value in entry.table.items()}))
    except (TypeError, ValueError) as exc:
        variables = dict(entry.variables)
        if isinstance(exc, keys.KeyProblem) and exc.key in variables:  # a job from the environment
            message = exc.render(f"variable {variables[exc.key]}", with_hint=False)
        else:
            message = str(exc)
        raise ConfigError(f"{entry.where}: {message}") from None
    for secret in job.secrets():
        log.add_secret(secret)
    channels = job.notify if job.notify is not None else _global_channels()
    if channels:
        from shared.notify import messages  # only jobs with channels pay for Apprise

        for url in channels:  # checked now, not when the first change or alert needs them
            messages.register_secrets(url)
            problem = messages.unusable(url)
            if problem:
                where = "key 'notify'" if job.notify is not None else "NOTIFY_URLS (its default channels)"
                raise ConfigError(f"{entry.where}: {where}: {problem}")
    return job


def _global_channels() -> tuple[str, ...]:
    return tuple(u for u in re.split(r"[\s,]+", os.environ.get("NOTIFY_URLS", "")) if u)


def _expand(value, key: str):
    """Replace ${VAR} in strings, and in lists of strings, with the environment's value. What a
    ${VAR} brings in is a secret (that is what the syntax is for): registered for redaction as
    it is expanded."""
    if isinstance(value, list):
        return [_expand(item, key) for item in value]
    if isinstance(value, dict):  # headers, cookies, a form: their values may use ${VAR} too
        return {name: _expand(item, key) for name, item in value.items()}
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match) -> str:
        escaped, var = match.groups()
        if escaped:
            return "${" + var + "}"
        if var not in os.environ:
            raise ValueError(f"key {key!r} uses ${{{var}}}, which is not set in the environment")
        log.add_secret(os.environ[var])  # before the job's own checks, which may show what it holds
        return os.environ[var]

    return _ENV_REF.sub(lookup, value)


def select(found: list[Entry], names: list[str] | None, kind: str, source: str) -> list[Entry]:
    """The entries named in `names` (all when None); an unknown name is a ConfigError."""
    if not names:
        return found
    names = list(dict.fromkeys(names))  # a job named twice runs once
    by_name = {entry.name: entry for entry in found}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(f"{source}: no [[{kind}]] job named {', '.join(map(repr, missing))}"
                          f" (known: {', '.join(by_name) or 'none'})")
    return [by_name[n] for n in names]


def kind_entries(kind) -> tuple[list[Entry], str]:
    """The entries of one kind and where they came from: the jobs file's, else (when the kind
    has one) the job its environment variables describe."""
    file_entries, source = [], "the environment"
    explicit_file = bool(os.environ.get("JOBS_FILE"))
    if has_jobs_file() or explicit_file and not kind.from_environment:
        source = jobs_source()
        file_entries = [e for e in entries() if e.kind == kind.name]
    if file_entries or not kind.from_environment:
        return file_entries, source
    table = kind.from_environment()
    if table is None:
        return [], source
    variables = tuple((key, var) for var, key in kind.environment_keys.items())
    return [Entry(kind.name, table["name"], table, f"environment (job {table['name']!r})", variables)], "the environment"


def entry_schedule(entry: Entry) -> schedule.Schedule:
    """When an unbuilt job runs (its schedule keys, or its kind's default); ConfigError naming it."""
    from shared.app.kinds import KINDS

    table = entry.table
    try:
        return schedule.parse(table.get("every"), table.get("at"), table.get("cron"), KINDS[entry.kind].default_every)
    except schedule.ScheduleError as exc:
        raise ConfigError(f"{entry.where}: {exc}") from None


def on_schedule(found: list[Entry], kind, every: str | None, at: str | None, source: str) -> list[Entry]:
    """The entries run on the schedule `every` (and `at`) names: what one Heroku Scheduler entry
    runs, so a job added to the file on that schedule runs from the entry that exists."""
    try:
        wanted = schedule.parse(every, at, None, kind.default_every).aws_expression()
    except schedule.ScheduleError as exc:
        raise ConfigError(f"--every/--at: {str(exc).replace('key ', '')}") from None
    return [entry for entry in found if entry_schedule(entry).aws_expression() == wanted]


def schedules(path: Path | None = None) -> list[tuple[str, str, schedule.Schedule]]:
    """[(kind, job name, Schedule)] from the jobs file, for deploy tools: reads only names and
    schedule keys, so the secrets that ${VAR}s name need not be set on the deploying machine."""
    return [(entry.kind, entry.name, entry_schedule(entry)) for entry in entries(path)]


def schedule_of(job, kind: str) -> schedule.Schedule:
    """When `job` runs (its every/at/cron keys, or its kind's default)."""
    from shared.app.kinds import KINDS

    return schedule.parse(job.every, job.at, job.cron, KINDS[kind].default_every)
