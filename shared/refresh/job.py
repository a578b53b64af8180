"""A `[[refresh]]` job: one statement run on a schedule, through CARTO's SQL API (v2, or
CARTO 3's v3) or straight on PostgreSQL. Times are seconds.

Without any `[[refresh]]` in the jobs file, one job named `carto` comes from the environment
(CARTO_USERNAME, CARTO_API_KEY, CARTO_SQL, CARTO_SQL_API_URL): a Heroku Button app has those.
"""

import os
import re
from dataclasses import dataclass, field

from shared.core import keys

DEFAULT_SQL = "SELECT process_data()"
DEFAULT_EVERY = "1d"
MODES = ("carto", "carto3", "postgres")
_CARTO_ONLY = ("username", "api_key", "sql_api_url", "base_url", "connection")
ENV_JOB_NAME = "carto"
MAX_SECONDS = 7 * 86400  # a week: any longer wait or budget is a typo
ENV_KEYS = {"CARTO_USERNAME": "username", "CARTO_API_KEY": "api_key", "CARTO_SQL": "sql",
            "CARTO_SQL_API_URL": "sql_api_url"}


@dataclass(frozen=True)
class RefreshJob:
    name: str
    mode: str = "carto"  # carto | carto3 | postgres
    sql: str = DEFAULT_SQL
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
    # Keys every kind has (shared/core/keys.py): schedule, notifications, alerts.
    every: str | None = None  # "1d" (default), "1h", "10m"
    at: str | None = None
    cron: str | None = None  # AWS only
    notify: tuple[str, ...] | None = None  # Apprise URLs; None means $NOTIFY_URLS, [] none
    alert_after: int = 3  # consecutive failed runs before one alert
    heartbeat: str | None = None  # a ping URL for this job alone (shared/notify/heartbeat.py)

    def __post_init__(self):
        keys.check_common(self, DEFAULT_EVERY)
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} must be one of {', '.join(MODES)}")
        keys.check_type(self, "sql", str)
        if not self.sql.strip():
            raise ValueError("key 'sql' is empty")
        for key in _CARTO_ONLY + ("database_url",):
            if getattr(self, key) is not None:
                keys.check_type(self, key, str)
        keys.check_type(self, "always_batch", bool)
        for key in ("statement_timeout", "connect_timeout", "read_timeout", "time_budget"):
            value = getattr(self, key)
            # `not 0 < value <= MAX_SECONDS` is also true of nan; inf or 1e300 would overflow the
            # timers and socket timeouts they become.
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= MAX_SECONDS:
                raise ValueError(f"key {key!r} must be a positive number of seconds up to {MAX_SECONDS:,},"
                                 f" not {value!r}")
        if self.mode == "postgres":
            for key in _CARTO_ONLY:
                if getattr(self, key) is not None:
                    raise ValueError(f"key {key!r} is for the CARTO modes, not mode 'postgres'")
            if self.database_url:
                from shared.core import db

                try:
                    db.parse_url(self.database_url, register=False)  # config.build registers secrets()
                except db.DatabaseConfigError as exc:
                    raise ValueError(f"key 'database_url': {exc}") from None
            return
        if self.database_url is not None:
            raise ValueError(f"key 'database_url' is for mode 'postgres', not mode {self.mode!r}")
        if not self.api_key:
            what = "the API key" if self.mode == "carto" else "the access token"
            raise keys.KeyProblem("api_key", "missing required {key} " + f"({what})",
                                  hint='write it as "${VAR}" to keep it out of the file')
        if self.mode == "carto3":
            if not self.base_url or not self.connection:
                raise ValueError("mode 'carto3' needs keys 'base_url' and 'connection'")
            keys.check_url(self, "base_url")
            return
        if self.sql_api_url is not None:
            keys.check_url(self, "sql_api_url")
        if self.username is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", self.username):
            raise keys.KeyProblem("username", "{key} " + f"{self.username!r} is not a CARTO user name")
        if not self.carto_user():
            raise keys.KeyProblem("username", "missing required {key} (the CARTO user: it names the endpoint"
                                  " and signs Batch API polls)")

    def secrets(self) -> tuple[str, ...]:
        """The API key and a password in database_url: never shown, wherever they came from."""
        found = [self.api_key] if self.api_key else []
        if self.heartbeat:  # anyone who has a ping URL can ping
            found.append(self.heartbeat)
        if self.database_url:
            from shared.core import db

            found.append(db.parse_url(self.database_url, register=False).password or "")
        return tuple(found)

    def carto_user(self) -> str | None:
        """The CARTO user: `username`, or the one in sql_api_url (/user/NAME/ or NAME.carto.com)."""
        if self.username:
            return self.username
        found = re.search(r"/user/([^/]+)/", self.sql_api_url or "") or \
            re.match(r"^https?://([^./]+)\.carto(?:db)?\.com[:/]", self.sql_api_url or "")
        return found.group(1) if found else None

    @property
    def where(self) -> str:
        """What the job runs on, for messages: an endpoint or a database, never a key."""
        if self.mode == "postgres":
            from shared.core import db

            url = self.database_url or os.environ.get("DATABASE_URL")
            try:
                return f"PostgreSQL {db.parse_url(url, register=False).safe()}" if url else "PostgreSQL ($DATABASE_URL)"
            except db.DatabaseConfigError:  # a malformed $DATABASE_URL: the alert about it must still go
                return "PostgreSQL ($DATABASE_URL, not a PostgreSQL URL)"
        if self.mode == "carto3":
            return f"CARTO 3 {self.base_url.rstrip('/')} connection {self.connection}"
        return f"CARTO {self.sql_api_url or f'https://{self.username}.carto.com/api/v2/sql'}"


def table_from_environment() -> dict | None:
    """The one job the CARTO_* variables describe, as a jobs-file table; None when they
    describe none (neither CARTO_USERNAME nor CARTO_SQL_API_URL is set)."""
    if not (os.environ.get("CARTO_USERNAME") or os.environ.get("CARTO_SQL_API_URL")):
        return None
    table = {"name": ENV_JOB_NAME}
    table.update({key: os.environ[var] for var, key in ENV_KEYS.items() if os.environ.get(var)})
    return table
