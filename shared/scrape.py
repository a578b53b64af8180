"""One scrape run: fetch each target, store what was seen, report one result per target.

Fetches run in parallel (bounded, and politely limited per host); each target's write is
its own transaction, so one failure loses nothing else.
"""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter

from shared import config, db, fetch, filters, notify, storage
from shared.config import ScrapeJob

logger = logging.getLogger(__name__)

CONCURRENCY = 8  # parallel fetches per run
PER_HOST = 2  # parallel fetches to any one host


@dataclass(frozen=True)
class Result:
    name: str
    outcome: str  # new | unchanged | changed | duplicate | error
    reason: str | None = None
    notice: str | None = None  # e.g. a notification that failed; the check itself is stored

    @property
    def failed(self) -> bool:
        return self.outcome == "error"

    def line(self) -> str:
        return (f"{self.name}: {self.outcome}" + (f": {self.reason}" if self.reason else "")
                + (f" ({self.notice})" if self.notice else ""))


def ensure_schema(con) -> None:
    """Create or migrate the schema unless it is already current (one cheap query)."""
    exists = con.run("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0]
    if exists and con.run("SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0] >= len(storage.MIGRATIONS):
        return
    storage.migrate(con)


def run(jobs: list[ScrapeJob], run_key: str | None = None, database_url: str | None = None,
        concurrency: int = CONCURRENCY, per_host: int = PER_HOST) -> list[Result]:
    con = db.connect(database_url)
    try:
        ensure_schema(con)
        done = _already_recorded(con, [job.name for job in jobs], run_key)
        results = {job.name: Result(job.name, "duplicate", f"already checked for run {run_key}")
                   for job in jobs if job.name in done}
        todo = [job for job in jobs if job.name not in done]
        for job, at, page_or_error in _fetch_all(todo, concurrency, per_host):
            results[job.name] = _store(con, job, at, page_or_error, run_key)
        return [results[job.name] for job in jobs]
    finally:
        con.close()


def _already_recorded(con, names: list[str], run_key: str | None) -> set[str]:
    if run_key is None or not names:
        return set()
    rows = con.run("SELECT name FROM scrape_targets WHERE name = ANY(:names) AND :key = ANY(recent_keys)",
                   names=names, key=run_key)
    return {row[0] for row in rows}


def _fetch_all(jobs: list[ScrapeJob], concurrency: int, per_host: int):
    """Yield (job, fetch time, Page or FetchError) as fetches finish."""
    session = fetch.new_session()
    # Keep up to `per_host` connections alive per host so they are reused, not reopened.
    adapter = HTTPAdapter(pool_connections=max(concurrency, 10), pool_maxsize=per_host)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    host_slots: dict[str, threading.Semaphore] = {}
    lock = threading.Lock()

    def one(job: ScrapeJob):
        host = urlsplit(job.url).netloc.lower()
        with lock:
            slot = host_slots.setdefault(host, threading.Semaphore(per_host))
        with slot:
            at = datetime.now(timezone.utc)
            try:
                return job, at, fetch.fetch(session, job.url, total_timeout=job.timeout,
                                             connect_timeout=min(fetch.CONNECT_TIMEOUT, job.timeout))
            except fetch.FetchError as exc:
                return job, at, exc

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(jobs) or 1))) as pool:
            yield from pool.map(one, jobs)
    finally:
        session.close()


def _store(con, job: ScrapeJob, at: datetime, page_or_error, run_key: str | None) -> Result:
    check = None  # what the stored check means for notifications
    try:
        if not isinstance(page_or_error, fetch.FetchError):
            page_or_error = _filtered(job, page_or_error.text)
        if isinstance(page_or_error, Exception):  # the fetch or the filters failed
            reason = str(page_or_error)
            logger.warning("%s: %s failed: %s", job.name, job.url, reason)
            failed = storage.record_failure(con, job.name, job.url, reason, at, run_key)
            result = Result(job.name, "error" if failed else "duplicate", reason)
            if failed:
                check = notify.Check("error", at.isoformat(), error=reason,
                                     streak_before=failed.previous_streak, streak=failed.streak)
        else:
            body = page_or_error
            recorded = storage.record_check(con, job.name, job.url, body, at, run_key, filters.fingerprint(job))
            result = Result(job.name, recorded.outcome)
            check = notify.Check(recorded.outcome, at.isoformat(), body=body, previous_body=recorded.previous_body,
                                 filters_changed=recorded.filters_changed, streak_before=recorded.previous_streak)
    except Exception as exc:  # a storage failure of one target must not stop the others
        logger.exception("%s: could not store the check", job.name)
        return Result(job.name, "error", f"storage failed: {exc}")
    # The check is stored: a failed notification is reported, never undoes it.
    notice = notify.after_check(job, check) if check else None
    return replace(result, notice=notice) if notice else result


def _filtered(job: ScrapeJob, page: str) -> str | filters.FilterError:
    """The body to store, or why the job's filters could not be applied."""
    try:
        return filters.apply(job, page)
    except filters.FilterError as exc:
        return exc


def resolve_jobs(names: list[str] | None = None, url: str | None = None, name: str | None = None) -> list[ScrapeJob]:
    """The targets of a run: one ad-hoc URL, or jobs from the jobs file (all, or those named)."""
    if url:
        if names:
            raise config.ConfigError("give either a URL or job names, not both")
        return [config.build_job("scrape", {"name": name or _name_for(url), "url": url}, "ad-hoc target")]
    return config.select(config.load_jobs()["scrape"], names, "scrape", config.jobs_source())


def _name_for(url: str) -> str:
    """A stable job name for an ad-hoc URL: its host and path, made name-safe."""
    parts = urlsplit(url)
    raw = (parts.netloc + parts.path).rstrip("/")
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in raw)[:100] or "page"
