"""The jobs file: one TOML file describing every job.

    [[scrape]]                 # one table per watched page
    name = "council-agenda"
    url = "https://example.org/agenda"

String values may name environment variables as `${NAME}`, so secrets stay out of the file.
Every mistake is a `ConfigError` naming the file, the job and the key.
"""

import os
import re
import tomllib
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

DEFAULT_JOBS_FILE = "jobs.toml"


class ConfigError(ValueError):
    """The jobs file or the environment is wrong; the message says where."""


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    url: str
    timeout: float = 30.0  # seconds for the whole fetch, body included

    def __post_init__(self):
        _check_type(self, "name", str)
        _check_type(self, "url", str)
        _check_type(self, "timeout", (int, float))
        if not 0 < self.timeout <= 600:
            raise ValueError(f"timeout {self.timeout!r} must be between 0 and 600 seconds")
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise ValueError(f"url {self.url!r} must be an http:// or https:// address")


# Which dataclass each top-level table kind builds; a new kind registers here.
JOB_KINDS: dict[str, type] = {"scrape": ScrapeJob}

def _check_type(job, key: str, kind) -> None:
    value = getattr(job, key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"key {key!r} must be a {names}, not {type(value).__name__}")


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def jobs_file_path() -> Path:
    return Path(os.environ.get("JOBS_FILE") or DEFAULT_JOBS_FILE)


def load_jobs(path: Path | None = None) -> dict[str, list]:
    """Read and validate the jobs file: {"scrape": [ScrapeJob, ...], ...}."""
    path = path or jobs_file_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: jobs file not found (set JOBS_FILE or create {DEFAULT_JOBS_FILE})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_jobs(data, str(path))


def parse_jobs(data: dict, source: str) -> dict[str, list]:
    jobs: dict[str, list] = {kind: [] for kind in JOB_KINDS}
    for kind, tables in data.items():
        if kind not in JOB_KINDS:
            raise ConfigError(f"{source}: unknown section [[{kind}]] (known: {', '.join(JOB_KINDS)})")
        if not isinstance(tables, list):
            raise ConfigError(f"{source}: {kind} must be written [[{kind}]], one table per job")
        seen = set()
        for index, table in enumerate(tables, 1):
            job = build_job(kind, table, f"{source}: [[{kind}]] #{index}")
            if job.name in seen:
                raise ConfigError(f"{source}: two [[{kind}]] jobs are named {job.name!r}")
            seen.add(job.name)
            jobs[kind].append(job)
    return jobs


def build_job(kind: str, table: dict, where: str):
    """Check one job table against its dataclass: required keys, unknown keys, types."""
    cls = JOB_KINDS[kind]
    name = table.get("name")
    if isinstance(name, str):
        where = f"{where.rsplit(' #', 1)[0]} job {name!r}"
        if not _NAME.match(name):
            raise ConfigError(f"{where}: name may use letters, digits, '_', '.', '-' (up to 100)")
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
    values = {}
    for key, spec in known.items():
        if key not in table:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise ConfigError(f"{where}: missing required key {key!r}")
            continue
        values[key] = _expand(table[key], where, key)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _expand(value, where: str, key: str):
    """Replace ${VAR} in strings with the environment's value."""
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match) -> str:
        var = match.group(1)
        if var not in os.environ:
            raise ConfigError(f"{where}: key {key!r} uses ${{{var}}}, which is not set in the environment")
        return os.environ[var]

    return _ENV_REF.sub(lookup, value)


def select(jobs: list, names: list[str] | None, kind: str, source: str) -> list:
    """The jobs named in `names` (all when None); an unknown name is a ConfigError."""
    if not names:
        return jobs
    by_name = {job.name: job for job in jobs}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(
            f"{source}: no [[{kind}]] job named {', '.join(map(repr, missing))}"
            f" (known: {', '.join(by_name) or 'none'})"
        )
    return [by_name[n] for n in names]
