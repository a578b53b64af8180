"""One scrape run: fetch each target, store what was seen, report one result per target.

Fetches run in parallel (bounded, and politely limited per host), with conditional requests
when the last answer carried validators. Checks are written in batches: a few round trips
per batch, whatever its size, each batch one transaction; if a batch fails, its checks are
written one by one so one bad target loses nothing else, and a broken connection is replaced.
"""

import hashlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime, timezone
from urllib.parse import urlsplit

from shared.core import db, log, numbers
from shared.core.errors import ConfigError
from shared.core.names import NAME_RULE, valid_name
from shared.core.result import DUPLICATE, ERROR, SKIPPED, Result
from shared.core.text import one_line
from shared.notify import messages
from shared.notify.outbox import Outbox
from shared.scrape import content, fetch, filters, memory, request, sandbox, store
from shared.scrape.job import ScrapeJob

logger = logging.getLogger(__name__)

# Parallel fetches per run. At 48, a run of 50 ms pages is CPU-bound on two cores (64 is no
# faster, bench/RESULTS.md), and 48 threads take about 40 MB: they fit the smallest dyno or a
# 512 MB Lambda with room to spare. $SCRAPE_CONCURRENCY or --concurrency overrides.
CONCURRENCY = 48
PER_HOST = 2  # parallel fetches to any one host: polite to small sites
BATCH_SIZE = 100  # checks written per transaction, at most
BATCH_BYTES = 16 * 1024 * 1024  # ... and memory of bodies per transaction (one JSON parameter)
BATCH_SECONDS = 5  # ... and seconds a fetched check waits to be written
STORAGE_FAILED = "storage failed"
ERROR_CHARS = 1000  # of a failed check's reason, stored and shown: what a server said, in one line
WRITE_MARGIN = 10  # seconds kept before a deadline to write what was fetched
PRUNE_MARGIN = 5  # seconds pruning needs before the deadline; without them it waits for the next run


def parse_concurrency(value: str, source: str) -> int:
    """A concurrency setting as written (--concurrency, $SCRAPE_CONCURRENCY): 1 to 500."""
    try:
        return numbers.whole(value, source, 1, 500)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def default_concurrency() -> int:
    value = os.environ.get("SCRAPE_CONCURRENCY")
    return CONCURRENCY if value is None else parse_concurrency(value, "SCRAPE_CONCURRENCY")


def run(jobs: list[ScrapeJob], run_key: str | None = None, database_url: str | None = None,
        concurrency: int | None = None, per_host: int = PER_HOST, deadline: float | None = None,
        prepare: Callable | None = None) -> list[Result]:
    """Check `jobs` and store what was seen. `deadline` (time.monotonic()) is when the run must
    be over, e.g. Lambda's timeout: a job whose fetch could not finish by then is not started.
    `prepare(con)` brings the schema up to date first (the entry adapter passes it)."""
    if concurrency is None:
        concurrency = default_concurrency()
    elif not 1 <= concurrency <= 500:
        raise ConfigError(f"concurrency {concurrency} must be from 1 to 500")
    con = db.connect(database_url)  # the writer's afterwards: one connection fewer to open per run
    try:
        if prepare is not None:
            prepare(con)
        try:
            states = store.target_states(con, [job.name for job in jobs], run_key)
        except Exception as exc:
            raise db.classify(exc, "reading the targets") from None
    except BaseException:
        db.close_quietly(con)
        raise
    results = {job.name: Result(job.name, DUPLICATE, f"already checked for run {run_key}")
               for job in jobs if job.name in states and states[job.name].recorded}
    todo = [job for job in jobs if job.name not in results]
    # Writes happen on their own thread, so handing out fetches never waits on the database
    # (the queue's bound holds fetching back if the database falls behind); notifications go
    # out from the outbox's own threads, so writing never waits on a mail server.
    try:
        with Outbox(deadline) as outbox:
            _fetch_and_write(todo, states, run_key, database_url, concurrency, per_host, deadline, results, outbox,
                             con)
            notices = outbox.close()  # waits for the notifications, never past the deadline
    finally:
        db.close_quietly(con)  # closed by the writer already, unless the run failed before it began
    for name, notice in notices.items():
        results[name] = replace(results[name], notice="; ".join(n for n in (results[name].notice, notice) if n))
    if deadline is None or time.monotonic() < deadline - PRUNE_MARGIN:
        _prune(jobs, database_url)
    return [results[job.name] for job in jobs]


def _prune(jobs: list[ScrapeJob], database_url: str | None) -> None:
    """Apply the jobs' `keep_days` once their checks are written. Pruning never fails the run
    nor changes a result: what it could not drop now, the next run drops."""
    keep = [(job.name, job.keep_days) for job in jobs if job.keep_days]
    if keep:
        try:
            with db.connection(database_url) as con:
                store.prune(con, keep)  # with a day's slack: cheap after every run
        except Exception as exc:  # noqa: BLE001 - see above
            logger.warning("pruning old history failed: %s", log.redact(str(exc)))


def _fetch_and_write(todo, states, run_key, database_url, concurrency, per_host, deadline, results, outbox,
                     con=None, again: bool = True) -> None:
    """Fetch and store `todo`; the writer takes over `con` (an open connection), if given. A 304
    whose content was deleted meanwhile (`history delete` racing the run) is fetched once more
    without validators, so its check is not lost."""
    budget = memory.from_environment()
    writer = _Writer(database_url, run_key, results, outbox, con)
    writes: queue.Queue = queue.Queue(maxsize=4)
    thread = threading.Thread(target=writer.write_all, args=(writes,), name="writer")
    thread.start()
    try:
        batch, size, written = [], 0, time.monotonic()
        for job, check in _check_all(todo, states, concurrency, per_host, deadline, budget):
            if check is None:
                results[job.name] = Result(job.name, SKIPPED, "not checked: the run's time ran out", retry=True)
                continue
            batch.append((job, check))
            size += check.hold.bytes if check.hold else memory.size_of(check.body)
            # Write every BATCH_SIZE checks, and sooner if they are big or slow to come, so a
            # run cut short (a Lambda timeout, a killed dyno) loses little.
            if len(batch) >= BATCH_SIZE or size >= BATCH_BYTES or time.monotonic() - written >= BATCH_SECONDS:
                writes.put(batch)
                batch, size, written = [], 0, time.monotonic()
        writes.put(batch)
    finally:
        writes.put(None)
        thread.join()
        writer.close()
    if writer.stale and again:
        logger.info("%d targets' history went away during their check: fetching them again", len(writer.stale))
        _fetch_and_write(writer.stale, {}, run_key, database_url, concurrency, per_host, deadline, results, outbox,
                         again=False)


class _Writer:
    """The writer thread's database side. It stores each batch in one transaction, and a batch
    that fails check by check, so one bad target loses only its own check. A broken connection
    is replaced; once the database is gone, every check left is failed at once with the reason,
    and one line says so: each target still gets its result line."""

    def __init__(self, database_url: str | None, run_key: str | None, results: dict, outbox: Outbox, con=None):
        self.url, self.run_key, self.results, self.outbox = database_url, run_key, results, outbox
        self.con = con  # opened on the first write when not given; closed by close()
        self.down: str | None = None  # why the database cannot be written any more
        self.stale: list[ScrapeJob] = []  # 304s whose content was deleted meanwhile: to fetch again

    def write_all(self, writes: queue.Queue) -> None:
        """The writer thread: store each batch as it comes, until None."""
        while (batch := writes.get()) is not None:
            try:
                self.results.update(self.write(batch))
            except Exception as exc:  # store handles storage errors; this is the last resort
                logger.exception("writing %d checks failed", len(batch))
                self.results.update({job.name: _unstored(job, exc) for job, _ in batch})
            finally:
                for _, check in batch:  # stored or not, their bodies are done with
                    if check.hold:
                        check.hold.release()

    def write(self, batch: list[tuple[ScrapeJob, store.Check]]) -> dict[str, Result]:
        """Write a batch in one transaction; if that fails, each check on its own. Then notify."""
        if not batch:
            return {}
        if self.down:
            return {job.name: _unstored(job, self.down) for job, _ in batch}
        try:
            started = time.monotonic()
            stored = list(zip(batch, store.record_batch(self.connection(), [c for _, c in batch], self.run_key)))
            logger.debug("wrote a batch of %d checks in %.3f s", len(batch), time.monotonic() - started)
        except Exception as exc:
            problem = db.classify(exc, "storing checks")
            if isinstance(problem, db.DatabaseUnavailable) and not self.reconnect(problem) \
                    or db.sqlstate(exc) in ("57014", "55P03"):  # gone, or a lock held past the statement timeout
                return {job.name: _unstored(job, self.down or problem) for job, _ in batch}
            logger.warning("writing a batch of %d checks failed (%s); writing them one by one", len(batch),
                           log.redact(str(problem)))
            stored = [((job, check), self.store_one(check)) for job, check in batch]
        self.stale += [job for (job, _), outcome in stored if outcome is store.STALE]
        return {job.name: _result(job, check, outcome, self.outbox) for (job, check), outcome in stored
                if outcome is not store.STALE}

    def store_one(self, check: store.Check):
        """One check in its own transaction: what record_batch gives, or the exception."""
        if self.down:
            return db.DatabaseUnavailable(self.down)
        try:
            return store.record_batch(self.connection(), [check], self.run_key)[0]
        except Exception as exc:  # a storage failure of one target must not stop the others
            problem = db.classify(exc, "storing the check")
            logger.warning("%s: could not store the check: %s", check.name, log.redact(str(problem)))
            if isinstance(problem, db.DatabaseUnavailable):
                self.reconnect(problem)
            return problem

    def connection(self):
        if self.con is None:
            self.con = db.connect(self.url)
        return self.con

    def reconnect(self, problem: Exception) -> bool:
        """After a failure: keep the connection if it still answers, else open a new one. False
        (and the database marked down for the rest of the run) when that fails too."""
        if self.con is not None and db.healthy(self.con):
            return True
        self.close()
        try:
            self.connection()
            return True
        except Exception as exc:  # noqa: BLE001 - any failure to reconnect means: down
            self.down = log.redact(f"storage failed: {problem}; reconnecting failed: {exc}")
            logger.error("the database went away during the run: %s; the checks not yet stored are reported"
                         " as errors", log.redact(str(exc)))
            return False

    def close(self) -> None:
        if self.con is not None:
            db.close_quietly(self.con)
            self.con = None


def _unstored(job: ScrapeJob, problem) -> Result:
    """A check that could not be stored: a retry of this run would store it."""
    reason = str(problem)
    if not reason.startswith(STORAGE_FAILED):
        reason = f"{STORAGE_FAILED}: {reason}"
    return Result(job.name, ERROR, log.redact(reason), retry=True)


def _check_all(jobs: list[ScrapeJob], states: dict, concurrency: int, per_host: int, deadline: float | None,
               budget: memory.Budget | None = None):
    """Yield (job, store.Check) as each target's fetch and filtering finish, or (job, None)
    for a job not started because its fetch could not end before `deadline`.

    Jobs go to the thread pool only when their host has a free slot, so no thread ever waits
    on a busy host while other hosts have work: a jobs file listing one site's pages together
    runs as fast as an interleaved one. Hosts take turns (round robin)."""
    pending: dict[str, deque] = {}
    for job in jobs:
        pending.setdefault(_host(job.url), deque()).append(job)
    http = fetch.new_pool(hosts=len(pending), per_host=per_host)
    box = sandbox.Sandbox()  # filters run in worker processes a job's timeout can stop
    in_flight: dict[str, int] = dict.fromkeys(pending, 0)
    ready = deque(pending)  # hosts with a job waiting and a free slot, in turn order
    running = {}  # future -> host

    def one(job: ScrapeJob) -> tuple[ScrapeJob, store.Check]:
        started = time.monotonic()
        check = check_target(http, job, states.get(job.name), memory.Hold(budget), box)
        return job, replace(check, seconds=time.monotonic() - started)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(jobs)))) as pool:
            while ready or running:
                while ready and len(running) < concurrency:
                    host = ready.popleft()
                    job = pending[host].popleft()
                    if deadline is not None and time.monotonic() + job.timeout + WRITE_MARGIN > deadline:
                        yield job, None
                        if pending[host]:
                            ready.append(host)
                        continue
                    running[pool.submit(one, job)] = host
                    in_flight[host] += 1
                    if pending[host] and in_flight[host] < per_host:
                        ready.append(host)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    host = running.pop(future)
                    in_flight[host] -= 1
                    if pending[host] and in_flight[host] == per_host - 1:  # it was full: free again
                        ready.append(host)
                    yield future.result()
    finally:
        http.clear()
        box.close()


def _host(url: str) -> str:
    """What politeness counts per: the host name (example.org and example.org:443 are one)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:  # ScrapeJob refuses such URLs; never let one stop the run
        return ""


def check_target(http, job: ScrapeJob, state: store.TargetState | None,
                 hold: memory.Hold | None = None, box: sandbox.Sandbox | None = None) -> store.Check:
    """Fetch one target and apply its filters; never raises for the target's own failures.
    What is stored never holds a secret a ${VAR} put into the job's URL. The check keeps its
    `hold` on the run's memory budget, sized to its body, until the writer has stored it. The
    job's timeout bounds fetching and filtering together: filters run in `box`'s workers."""
    hold = hold or memory.Hold(None)
    if box is None:
        with sandbox.Sandbox() as own:
            check = _check_target(http, job, state, hold, own)
    else:
        check = _check_target(http, job, state, hold, box)
    hold.settle(memory.size_of(check.body))
    return replace(check, hold=hold)


def _check_target(http, job: ScrapeJob, state: store.TargetState | None, hold: memory.Hold,
                  box: sandbox.Sandbox) -> store.Check:
    at, started = datetime.now(timezone.utc), time.monotonic()
    fingerprint = filters.fingerprint(job)
    validators = _validators(job, state, fingerprint)
    if validators:
        logger.debug("%s: conditional request (%s)", job.name, ", ".join(validators))
    try:
        page = _fetch(http, job, validators, hold, job.timeout)
        if page.status == 304 and (not validators or page.redirected):
            # A 304 we did not ask for, or one for another URL: the validators cannot be
            # trusted. Drop them and ask again plainly, in what is left of the job's timeout.
            logger.info("%s: inconsistent 304 from %s; fetching without validators", job.name, job.url)
            page = _fetch(http, job, {}, hold, job.timeout - (time.monotonic() - started))
            if page.status == 304:
                raise fetch.FetchError("HTTP 304 Not Modified to a request that was not conditional")
        if page.status == 304:
            logger.debug("%s: 304 Not Modified: unchanged, no body fetched", job.name)
            return store.Check(job.name, log.redact(job.url), at, not_modified=True, filters=fingerprint,
                               etag=page.etag, last_modified=page.last_modified, base=state.content_id)
        filtering = time.monotonic()
        text = content.normalized(page.text, page.content_type, job.json) if page.pdf is None else ""
        body = box.apply(job, text, job.timeout - (time.monotonic() - started), pdf=page.pdf)
        logger.debug("%s: filters took %.3f s", job.name, time.monotonic() - filtering)
        body = log.redact(body)  # a page may echo the secret URL it was fetched from
    except (fetch.FetchError, filters.FilterError, content.ContentError) as exc:
        logger.debug("%s: %s failed: %s", job.name, job.url, one_line(exc))  # its result line says so
        return store.Check(job.name, log.redact(job.url), at, error=one_line(exc, ERROR_CHARS))
    except Exception as exc:  # a bug or a page nobody foresaw: this target fails, the run goes on
        logger.exception("%s: checking %s failed unexpectedly", job.name, job.url)
        return store.Check(job.name, log.redact(job.url), at,
                           error=one_line(f"unexpected {type(exc).__name__}: {exc}", ERROR_CHARS))
    keep = job.conditional and not page.redirected  # a redirect's validators belong to another URL
    return store.Check(job.name, log.redact(job.url), at, body=body, filters=fingerprint,
                         etag=page.etag if keep else None, last_modified=page.last_modified if keep else None)


def _validators(job: ScrapeJob, state: store.TargetState | None, fingerprint: str) -> dict:
    """If-None-Match / If-Modified-Since for this check, when a 304 would be trustworthy: the
    target has content, and its filters are those that made it (else the body must be redone)."""
    if not job.conditional or job.method != "GET" or job.render or state is None or not state.has_content \
            or state.filters != fingerprint:
        return {}
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


def _fetch(http, job: ScrapeJob, headers: dict, hold: memory.Hold, seconds: float) -> fetch.Page:
    if seconds <= 0:
        raise fetch.FetchError(f"timed out: no complete answer within {job.timeout:g} s")
    if job.render == "browser":  # the DOM after scripts ran; no validators apply
        from shared.scrape import render

        try:
            text = render.render(job.url, seconds)
        except render.RenderError as exc:
            raise fetch.FetchError(str(exc)) from None
        hold.settle(memory.size_of(text) * 2)
        return fetch.Page(url=job.url, status=200, text=text, content_type="text/html")
    method, sent, body = request.prepared(job)
    page = fetch.fetch(http, job.url, headers={**sent, **headers}, total_timeout=seconds,
                       connect_timeout=min(fetch.CONNECT_TIMEOUT, seconds), hold=hold, method=method, body=body)
    hold.settle(memory.size_of(page.text) * 2 + 3 * len(page.pdf or b""))  # room for filters; a PDF sent to a worker
    return page


def _result(job: ScrapeJob, check: store.Check, stored, outbox: Outbox) -> Result:
    """The result line of one stored check; what it calls for goes to the outbox."""
    if isinstance(stored, Exception):
        return _unstored(job, stored)
    at = check.at.isoformat()
    if check.error is not None:
        if stored is None:  # this run already recorded the target
            return Result(job.name, DUPLICATE, check.error)
        result = Result(job.name, ERROR, check.error, seconds=check.seconds)
        event = messages.Check("error", at, error=check.error, streak_before=stored.previous_streak,
                             streak=stored.streak)
    else:
        result = Result(job.name, stored.outcome, seconds=check.seconds)
        if stored.outcome == DUPLICATE:
            return result
        body = check.body if not check.not_modified else None
        event = messages.Check(stored.outcome, at, body=body, previous_body=stored.previous_body,
                             filters_changed=stored.filters_changed, streak_before=stored.previous_streak)
    # The check is stored: a failed notification is reported (its notice), never undoes it.
    why = outbox.post(job, event)
    return replace(result, notice=why) if why else result


def adhoc_table(url: str, name: str | None) -> dict:
    """A one-off target (--url, or a manual invoke's "url") as a [[scrape]] table."""
    try:
        urlsplit(url)
    except ValueError as exc:  # the URL is not echoed: a password in it could not be found
        raise ConfigError(f"ad-hoc target: url is not a valid URL ({exc})") from None
    if name and not valid_name(name):  # it names the history, and starts each result line
        raise ConfigError(f"ad-hoc target: name {name[:100]!r} {NAME_RULE}")
    return {"name": name or _name_for(url), "url": url}


def _name_for(url: str) -> str:
    """A stable job name for an ad-hoc URL: its host, port and path made name-safe, and a hash
    of the query when there is one (two URLs that differ only there are two targets). Never
    the user-info: a password in a URL must not become part of a name."""
    parts = urlsplit(url)
    host = (parts.hostname or "") + (f"-{parts.port}" if _port(parts) else "")
    raw = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "-" for c in host + parts.path.rstrip("/"))
    name = raw.strip("-.")[:100] or "page"
    if parts.query:
        name = f"{name[:90]}-q{hashlib.sha256(parts.query.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return name


def _port(parts) -> int | None:
    try:
        return parts.port
    except ValueError:  # not a number: the URL check reports it
        return None
