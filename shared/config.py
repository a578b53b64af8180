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
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from shared import filters, log, schedule
from shared.notify import register_secrets

DEFAULT_JOBS_FILE = "jobs.toml"


class ConfigError(ValueError):
    """The jobs file or the environment is wrong; the message says where."""


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    url: str
    timeout: float = 30.0  # seconds for the whole fetch, body included
    conditional: bool = True  # send If-None-Match/If-Modified-Since; a 304 is an unchanged check
    every: str | None = None  # schedule (shared/schedule.py): "10m" (default), "1h", "1d"
    at: str | None = None
    cron: str | None = None  # AWS only
    # Noise filters (shared/filters.py): what of the page counts as its content.
    select: tuple[str, ...] = ()  # CSS selectors: keep only what they match
    drop: tuple[str, ...] = ()  # CSS selectors: remove what they match
    ignore: tuple[str, ...] = ()  # regular expressions: remove matching text
    text: bool | None = None  # HTML -> text; default: on when a filter above is set
    whitespace: str = "ignore"  # "ignore": spacing and blank lines are not changes; "keep"
    # Notifications (shared/notify.py): Apprise URLs; None means $NOTIFY_URLS, [] none.
    notify: tuple[str, ...] | None = None
    alert_after: int = 3  # consecutive failed checks before one alert

    def __post_init__(self):
        _check_type(self, "name", str)
        _check_type(self, "url", str)
        _check_type(self, "timeout", (int, float))
        _check_type(self, "conditional", bool)
        if not 0 < self.timeout <= 300:  # a run must fit Lambda's and Heroku Scheduler's limits
            raise ValueError(f"timeout {self.timeout!r} must be between 0 and 300 seconds")
        for key in ("select", "drop", "ignore", "notify"):
            _as_strings(self, key)
        for selector in self.select + self.drop:
            filters.check_selector(selector)
        for pattern in self.ignore:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"key 'ignore': {pattern!r} is not a valid regular expression: {exc}") from None
        if self.text is not None:
            _check_type(self, "text", bool)
        if self.whitespace not in filters.WHITESPACE_MODES:
            raise ValueError(f"key 'whitespace' must be one of {', '.join(filters.WHITESPACE_MODES)}, not {self.whitespace!r}")
        for url in self.notify or ():
            if not re.match(r"^[a-z][a-z0-9+.-]*://", url):
                raise ValueError("key 'notify' holds an entry that is not an Apprise URL (scheme://...)")
            register_secrets(url)
        _check_type(self, "alert_after", int)
        if not 1 <= self.alert_after <= 10000:
            raise ValueError(f"key 'alert_after' must be between 1 and 10000, not {self.alert_after}")
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise ValueError(f"url {self.url!r} must be an http:// or https:// address")


DEFAULT_REFRESH_SQL = "SELECT process_data()"
REFRESH_MODES = ("carto", "carto3", "postgres")
_CARTO_ONLY = ("username", "api_key", "sql_api_url", "base_url", "connection")


@dataclass(frozen=True)
class RefreshJob:
    """One statement run on a schedule: through CARTO's SQL API (v2, or CARTO 3's v3) or
    straight on PostgreSQL. Times are seconds."""
    name: str
    mode: str = "carto"  # carto | carto3 | postgres
    sql: str = DEFAULT_REFRESH_SQL
    username: str | None = None  # carto: the CARTO user (default endpoint, Batch API polls)
    api_key: str | None = field(default=None, repr=False)  # carto: API key; carto3: access token
    sql_api_url: str | None = None  # carto: full endpoint, default https://{username}.carto.com/api/v2/sql
    base_url: str | None = None  # carto3: regional API base, e.g. https://gcp-us-east1.api.carto.com
    connection: str | None = None  # carto3: the connection name
    always_batch: bool = False  # carto/carto3: skip the synchronous call, run a Batch API job
    database_url: str | None = field(default=None, repr=False)  # postgres: default $DATABASE_URL
    statement_timeout: float = 300.0  # postgres: server-side cap on the statement
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # carto: one HTTP answer (CARTO's own sync limit is 5-25 s, v3's 60 s)
    time_budget: float = 540.0  # everything, retries and batch polls included: fits a 10-minute run
    every: str | None = None  # schedule (shared/schedule.py): "1d" (default), "1h", "10m"
    at: str | None = None
    cron: str | None = None  # AWS only

    def __post_init__(self):
        _check_type(self, "name", str)
        if self.mode not in REFRESH_MODES:
            raise ValueError(f"mode {self.mode!r} must be one of {', '.join(REFRESH_MODES)}")
        _check_type(self, "sql", str)
        if not self.sql.strip():
            raise ValueError("key 'sql' is empty")
        for key in _CARTO_ONLY + ("database_url",):
            if getattr(self, key) is not None:
                _check_type(self, key, str)
        _check_type(self, "always_batch", bool)
        for key in ("statement_timeout", "connect_timeout", "read_timeout", "time_budget"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"key {key!r} must be a positive number of seconds, not {value!r}")
        if self.mode == "postgres":
            for key in _CARTO_ONLY:
                if getattr(self, key) is not None:
                    raise ValueError(f"key {key!r} is for the CARTO modes, not mode 'postgres'")
            return
        if self.database_url is not None:
            raise ValueError(f"key 'database_url' is for mode 'postgres', not mode {self.mode!r}")
        if not self.api_key:
            what = "the API key" if self.mode == "carto" else "the access token"
            raise ValueError(f"missing required key 'api_key' ({what}; write it as \"${{VAR}}\" to keep it out of the file)")
        if self.mode == "carto3":
            if not self.base_url or not self.connection:
                raise ValueError("mode 'carto3' needs keys 'base_url' and 'connection'")
            _check_url(self, "base_url")
            return
        if self.sql_api_url is not None:
            _check_url(self, "sql_api_url")
        if self.username is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", self.username):
            raise ValueError(f"username {self.username!r} is not a CARTO user name")
        if not self.carto_user():
            raise ValueError("missing required key 'username' (the CARTO user: it names the endpoint"
                             " and signs Batch API polls)")

    def carto_user(self) -> str | None:
        """The CARTO user: `username`, or the one in sql_api_url (/user/NAME/ or NAME.carto.com)."""
        if self.username:
            return self.username
        found = re.search(r"/user/([^/]+)/", self.sql_api_url or "") or \
            re.match(r"^https?://([^./]+)\.carto(?:db)?\.com[:/]", self.sql_api_url or "")
        return found.group(1) if found else None


def _check_url(job, key: str) -> None:
    value = getattr(job, key)
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{key} {value!r} must be an http:// or https:// address")
    if "?" in value or "#" in value or "api_key" in value:
        raise ValueError(f"{key} must be a plain endpoint: no query string (the API key goes in 'api_key')")


# Which dataclass each top-level table kind builds; a new kind registers here.
JOB_KINDS: dict[str, type] = {"scrape": ScrapeJob, "refresh": RefreshJob}

def _as_strings(job, key: str) -> None:
    """A string or a list of strings, kept as a tuple (the dataclass is frozen)."""
    value = getattr(job, key)
    if value is None and key == "notify":
        return
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"key {key!r} must be a string or a list of non-empty strings")
    object.__setattr__(job, key, tuple(value))


def _check_type(job, key: str, kind) -> None:
    value = getattr(job, key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"key {key!r} must be a {names}, not {type(value).__name__}")


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def jobs_source() -> str:
    """Where the jobs come from, for messages: $JOBS_TOML or the jobs file's path."""
    return "$JOBS_TOML" if os.environ.get("JOBS_TOML") else str(jobs_file_path())


def jobs_file_path() -> Path:
    return Path(os.environ.get("JOBS_FILE") or DEFAULT_JOBS_FILE)


def load_jobs(path: Path | None = None) -> dict[str, list]:
    """Read and validate the jobs file: {"scrape": [ScrapeJob, ...], ...}."""
    return parse_jobs(*_read_toml(path))


def _read_toml(path: Path | None) -> tuple[dict, str]:
    """The jobs as TOML data and where they came from: $JOBS_TOML (the jobs themselves in a
    config var, so a Heroku Button deploy needs no commit), else the jobs file."""
    if path is None and os.environ.get("JOBS_TOML"):
        text, source = os.environ["JOBS_TOML"], "$JOBS_TOML"
    else:
        path = path or jobs_file_path()
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except FileNotFoundError:
            raise ConfigError(f"{path}: jobs file not found (set JOBS_FILE or create {DEFAULT_JOBS_FILE})") from None
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None


def parse_jobs(data: dict, source: str) -> dict[str, list]:
    jobs: dict[str, list] = {kind: [] for kind in JOB_KINDS}
    for kind, tables in data.items():
        if kind not in JOB_KINDS:
            raise ConfigError(f"{source}: unknown section [[{kind}]] (known: {', '.join(JOB_KINDS)})")
        if not isinstance(tables, list):
            raise ConfigError(f"{source}: {kind} must be written [[{kind}]], one table per job")
        seen = set()
        for index, table in enumerate(tables, 1):
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [[{kind}]] #{index} must be a table of keys, written [[{kind}]]")
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
        job = cls(**values)
        schedule_of(job)  # checks every/at/cron
        return job
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_schedules(path: Path | None = None) -> list[tuple[str, str, schedule.Schedule]]:
    """[(kind, job name, Schedule)] from the jobs file, for deploy tools: reads only names and
    schedule keys, so the secrets that ${VAR}s name need not be set on the deploying machine."""
    data, source = _read_toml(path)
    found = []
    for kind, tables in data.items():
        if kind not in JOB_KINDS or not isinstance(tables, list):
            raise ConfigError(f"{source}: unknown section [[{kind}]] (known: {', '.join(JOB_KINDS)})")
        for index, table in enumerate(tables, 1):
            name = table.get("name") if isinstance(table, dict) else None
            if not isinstance(name, str) or not _NAME.match(name):
                raise ConfigError(f"{source}: [[{kind}]] #{index}: missing or invalid key 'name'")
            try:
                found.append((kind, name, schedule.parse(table.get("every"), table.get("at"), table.get("cron"), kind)))
            except schedule.ScheduleError as exc:
                raise ConfigError(f"{source}: [[{kind}]] job {name!r}: {exc}") from None
    return found


def schedule_of(job) -> schedule.Schedule:
    """When `job` runs (its every/at/cron keys, or its kind's default)."""
    kind = next(k for k, cls in JOB_KINDS.items() if isinstance(job, cls))
    return schedule.parse(job.every, job.at, job.cron, kind)


def _expand(value, where: str, key: str):
    """Replace ${VAR} in strings, and in lists of strings, with the environment's value. What a
    ${VAR} brings in is treated as a secret: that is what the syntax is for."""
    if isinstance(value, list):
        return [_expand(item, where, key) for item in value]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match) -> str:
        var = match.group(1)
        if var not in os.environ:
            raise ConfigError(f"{where}: key {key!r} uses ${{{var}}}, which is not set in the environment")
        log.add_secret(os.environ[var])
        return os.environ[var]

    return _ENV_REF.sub(lookup, value)


def select(jobs: list, names: list[str] | None, kind: str, source: str) -> list:
    """The jobs named in `names` (all when None); an unknown name is a ConfigError."""
    if not names:
        return jobs
    names = list(dict.fromkeys(names))  # a job named twice runs once
    by_name = {job.name: job for job in jobs}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(
            f"{source}: no [[{kind}]] job named {', '.join(map(repr, missing))}"
            f" (known: {', '.join(by_name) or 'none'})"
        )
    return [by_name[n] for n in names]
