"""One refresh run: each job's statement (default `SELECT process_data()`) through CARTO's SQL
API or straight on PostgreSQL, one result per job.

Jobs come from the jobs file's [[refresh]] tables or, for a single job, from the environment
(CARTO_USERNAME, CARTO_API_KEY, CARTO_SQL, CARTO_SQL_API_URL). Jobs run one after another:
they usually hit the same CARTO account, whose rate limit is per user.
"""

import logging
import os
import random
import time
from dataclasses import dataclass

from shared import carto, config, db, log
from shared.config import RefreshJob

logger = logging.getLogger(__name__)

ENV_JOB_NAME = "carto"
ENV_KEYS = {"CARTO_USERNAME": "username", "CARTO_API_KEY": "api_key", "CARTO_SQL": "sql",
            "CARTO_SQL_API_URL": "sql_api_url"}
LAMBDA_MARGIN = 10.0  # seconds kept back from Lambda's timeout to report and return


@dataclass(frozen=True)
class Result:
    name: str
    outcome: str  # ok | error
    reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome == "error"

    def line(self) -> str:
        return f"{self.name}: {self.outcome}" + (f": {self.reason}" if self.reason else "")


class PostgresRefreshError(Exception):
    """The statement failed on PostgreSQL; the message is the line shown to users."""


def resolve_jobs(names: list[str] | None = None) -> list[RefreshJob]:
    """The jobs file's [[refresh]] jobs when it has any ($JOBS_TOML, $JOBS_FILE, or ./jobs.toml
    if present); otherwise the single job the CARTO_* environment variables describe."""
    # A JOBS_FILE that does not exist is an error, unless the environment describes a job
    # (a Heroku Button app has the variable preset and may have no file).
    named_but_missing = bool(os.environ.get("JOBS_FILE")) and not _env_configured()
    if os.environ.get("JOBS_TOML") or config.jobs_file_path().exists() or named_but_missing:
        source = config.jobs_source()
        jobs = config.load_jobs()["refresh"]
        if jobs or not _env_configured():
            if not jobs:
                raise config.ConfigError(f"{source}: no [[refresh]] job, and CARTO_USERNAME / CARTO_SQL_API_URL"
                                         " are not set")
            return _registered(config.select(jobs, names, "refresh", source))
    if not _env_configured():
        raise config.ConfigError("nothing to refresh: set CARTO_USERNAME and CARTO_API_KEY (or CARTO_SQL_API_URL"
                                 f" for another endpoint), or JOBS_FILE naming a file with [[refresh]] jobs")
    return _registered(config.select([job_from_env()], names, "refresh", "the environment"))


def _env_configured() -> bool:
    return bool(os.environ.get("CARTO_USERNAME") or os.environ.get("CARTO_SQL_API_URL"))


def job_from_env() -> RefreshJob:
    log.add_secret(os.environ.get("CARTO_API_KEY"))
    table = {"name": ENV_JOB_NAME}
    table.update({key: os.environ[var] for var, key in ENV_KEYS.items() if os.environ.get(var)})
    try:
        return RefreshJob(**table)
    except (TypeError, ValueError) as exc:
        message = str(exc).replace(' write it as "${VAR}" to keep it out of the file', "").replace(";)", ")")
        for var, key in ENV_KEYS.items():  # name the variables the user actually set
            message = message.replace(f"key {key!r}", f"variable {var}").replace(f"{key} ", f"{var} ", 1)
        raise config.ConfigError(f"environment (job {ENV_JOB_NAME!r}): {message}") from None


def _registered(jobs: list[RefreshJob]) -> list[RefreshJob]:
    """Register every secret before anything can log, and check database URLs early."""
    for job in jobs:
        log.add_secret(job.api_key)
        if job.database_url:
            try:
                db.parse_url(job.database_url)  # also registers its password
            except db.DatabaseConfigError as exc:
                raise config.ConfigError(f"[[refresh]] job {job.name!r}: key 'database_url': {exc}") from None
    return jobs


def deadline_for(context, margin: float = LAMBDA_MARGIN) -> float | None:
    """A time.monotonic() deadline ending `margin` s (at most half the time left) before Lambda
    stops the invocation; None outside Lambda."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        return None
    remaining = remaining_ms() / 1000
    return time.monotonic() + remaining - min(margin, remaining / 2)


def run(jobs: list[RefreshJob], deadline: float | None = None, timing: carto.Timing = carto.Timing()) -> list[Result]:
    """Run each job within its own time_budget and the run's `deadline` (monotonic)."""
    results = []
    for job in jobs:
        job_deadline = time.monotonic() + job.time_budget
        if deadline is not None:
            job_deadline = min(job_deadline, deadline)
        results.append(run_one(job, job_deadline, timing))
    return results


def run_one(job: RefreshJob, deadline: float, timing: carto.Timing = carto.Timing()) -> Result:
    try:
        if job.mode == "postgres":
            summary = run_postgres(job, deadline, timing)
        else:
            summary = carto.refresh(job, deadline, timing=timing).summary()
    except carto.CartoError as exc:
        result = Result(job.name, "error", exc.reason)
    except (PostgresRefreshError, ConnectionError, db.DatabaseConfigError) as exc:
        result = Result(job.name, "error", log.redact(str(exc)))
    except Exception as exc:  # one job's bug must not hide the others' results
        logger.exception("%s: unexpected failure", job.name)
        result = Result(job.name, "error", log.redact(f"unexpected {type(exc).__name__}: {exc}"))
    else:
        result = Result(job.name, "ok", summary)
    (logger.warning if result.failed else logger.info)("%s", result.line())
    return result


def run_postgres(job: RefreshJob, deadline: float, timing: carto.Timing = carto.Timing()) -> str:
    """Run the statement on the job's database_url (default $DATABASE_URL) under a statement
    timeout; a failed connection is retried with backoff, a failed statement never is."""
    import pg8000.native  # only this mode needs it (see shared.db.connect)

    started = time.monotonic()
    con = _connect_with_retries(job, deadline, timing)
    timeout = min(job.statement_timeout, max(0.1, deadline - time.monotonic()))
    try:
        con.run(f"SET statement_timeout = {int(timeout * 1000)}")
        db.set_read_timeout(con, timeout + db.READ_MARGIN)
        answer = con.run(job.sql)
        rows, columns = con.row_count, con.columns
    except pg8000.native.DatabaseError as exc:
        raise PostgresRefreshError(_pg_reason(exc, timeout)) from None
    except (pg8000.native.InterfaceError, OSError) as exc:
        raise PostgresRefreshError(f"connection lost during the statement: {exc}") from None
    finally:
        try:
            con.close()
        except (pg8000.native.InterfaceError, OSError):
            pass
    counted = f", {rows} row" + ("" if rows == 1 else "s") if rows is not None and rows >= 0 else ""
    value = ""
    if answer and len(answer) == 1 and columns and len(columns) == 1 and answer[0][0] not in (None, ""):
        value = log.redact(f": {columns[0]['name']} = {answer[0][0]}"[:82])
    return f"done on PostgreSQL in {time.monotonic() - started:.2f} s{counted}{value}"


def _connect_with_retries(job: RefreshJob, deadline: float, timing: carto.Timing):
    tries = 0
    while True:
        tries += 1
        try:
            return db.connect(job.database_url)
        except db.ConnectionRefusedByServer:
            raise  # a wrong password or database name: no use trying again
        except ConnectionError as exc:
            wait = min(timing.backoff_max, timing.backoff_initial * 2 ** (tries - 1)) * random.uniform(0.5, 1.0)
            if time.monotonic() + wait > deadline:
                raise ConnectionError(f"{exc} (gave up after {tries} tries)") from None
            logger.warning("%s: %s; retrying in %.1f s", job.name, log.redact(str(exc)), wait)
            time.sleep(wait)


def _pg_reason(exc: Exception, timeout: float) -> str:
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {"M": str(exc)}
    code, message = fields.get("C", "?"), fields.get("M", str(exc))
    if code == "57014" and "statement timeout" in message:
        return f"statement timeout: stopped after {timeout:g} s (raise statement_timeout, or make the statement faster)"
    reason = f"SQLSTATE {code}: {message}"
    if fields.get("H"):
        reason += f" (hint: {fields['H']})"
    if fields.get("W"):
        reason += f" (where: {fields['W'].splitlines()[0]})"
    return log.redact(reason)
