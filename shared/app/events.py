"""What a Lambda trigger asks for, whatever its shape.

Three shapes reach a handler:

- EventBridge Scheduler, with the Input our template sets:
      {"job": "name" | "jobs": [...], "scheduled_time": "<aws.scheduler.scheduled-time>"}
  Scheduler replaces the placeholder with the run's scheduled time (e.g. 2026-11-21T10:00:00Z).
- An EventBridge rule's scheduled event: {"id": ..., "time": ..., "detail-type": "Scheduled Event", ...}
- A manual invoke: {} (every job), {"job": ...}, or {"url": ..., "name": ...} (one ad-hoc page).
- An SQS event from the dispatcher's work queue: {"Records": [{"body": "<one of the above>"}, ...]}.

The run key, which makes a redelivered event a no-op, is the scheduled time: the
Scheduler's `scheduled_time`, or a rule event's `time` (shared by every delivery of one
scheduled event, retries included). A manual invoke may pass "run_key"; otherwise it has none
and every invoke is a new check.
"""

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.core.errors import EventError
from shared.core.names import NAME_RULE, valid_name


@dataclass(frozen=True)
class Request:
    jobs: list[str] | None = None  # job names; None means every job
    url: str | None = None  # an ad-hoc target instead of jobs
    name: str | None = None
    run_key: str | None = None
    schedule: str | None = None  # dispatcher: the jobs whose AWS schedule expression this is
    shard: tuple[int, int] | None = None  # (I, N): only shard I of N of the jobs (command line)
    kind: str | None = None  # dispatcher: the kind whose jobs it shards
    every: str | None = None  # command line: only the jobs run on this schedule (--every, --at)
    at: str | None = None


PLACEHOLDER_PREFIX = "<aws.scheduler."


MAX_TEXT = 2048  # characters in any one value of an event: names, keys, URLs


def parse_all(event) -> list[Request]:
    """The requests in an event: one, or one per record of an SQS event."""
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        requests = []
        for index, record in enumerate(event["Records"], 1):
            if not isinstance(record, dict):
                raise EventError(f"SQS record #{index} is not an object")
            where = f"SQS record {_text(record.get('messageId'), 'messageId', f'#{index}')}"
            try:
                body = json.loads(record["body"])
            except (KeyError, TypeError, ValueError) as exc:
                raise EventError(f"{where} has no JSON body: {str(exc)[:200]}") from None
            try:
                requests.append(parse(body))
            except EventError as exc:
                raise EventError(f"{where}: {exc}") from None
        return requests
    return [parse(event)]


def parse(event) -> Request:
    """The request of one event; EventError (one line naming the key) for anything else."""
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, not {type(event).__name__}")
    jobs = event.get("jobs")
    if "job" in event:
        jobs = [event["job"]]
    if jobs is not None and (not isinstance(jobs, list) or not all(isinstance(j, str) for j in jobs)):
        raise EventError("event 'job' must be a name, 'jobs' a list of names")
    if jobs == []:  # not "every job": an event that names none must not run them all
        raise EventError("event 'jobs' names no job")
    jobs = [_text(j, "job") for j in jobs] if jobs is not None else None
    key_name = next((k for k in ("run_key", "scheduled_time") if event.get(k)), None)
    run_key = event.get(key_name) if key_name else None
    if run_key is None and event.get("detail-type") == "Scheduled Event":
        key_name = "time" if event.get("time") else "id"
        run_key = event.get(key_name)
    if isinstance(run_key, str) and run_key.startswith(PLACEHOLDER_PREFIX):
        raise EventError(f"event carries the unreplaced placeholder {run_key!r}: it was not sent by EventBridge Scheduler")
    if run_key is not None:
        run_key = _text(run_key, key_name)
        if key_name in ("scheduled_time", "time"):
            _check_time(run_key, key_name)
    url = _text(event.get("url"), "url")
    if url is not None and any(c.isspace() or ord(c) < 32 for c in url):
        raise EventError("event 'url' holds spaces or control characters")
    if url is not None:
        try:
            urlsplit(url)
        except ValueError as exc:  # not echoed: it may hold a password
            raise EventError(f"event 'url' is not a valid URL ({exc})") from None
    schedule = event.get("schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise EventError("event 'schedule' must be a schedule expression such as rate(10 minutes)")
    name = _text(event.get("name"), "name")
    if name is not None and not valid_name(name):
        raise EventError(f"event 'name' {NAME_RULE}")
    return Request(jobs=jobs, url=url, name=name, run_key=run_key,
                   schedule=_text(schedule, "schedule"), kind=_text(event.get("kind"), "kind"))


def _text(value, key: str, default=None, what: str | None = None):
    """A string value of the event, checked: short, no NUL, no lone surrogate (what PostgreSQL
    and a log line can hold)."""
    what = what or f"event {key!r}"
    if value is None:
        return default
    if not isinstance(value, str):
        raise EventError(f"{what} must be a string, not {type(value).__name__}")
    if not value or len(value) > MAX_TEXT:
        raise EventError(f"{what} must be 1 to {MAX_TEXT} characters")
    if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
        raise EventError(f"{what} holds a NUL or an unpaired surrogate")
    return value


def argument(value: str | None, flag: str) -> str | None:
    """A command-line value, checked as an event's (argv may carry undecodable bytes, which
    Python turns into lone surrogates): an EventError (a ConfigError, exit 2) naming the option."""
    return _text(value, flag, what=flag)


def _check_time(value: str, key: str) -> None:
    """EventBridge sends times like 2026-11-21T10:00:00Z; anything else is not from it."""
    from datetime import datetime

    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise EventError(f"event {key!r} is not a time such as 2026-11-21T10:00:00Z: {value[:60]!r}") from None
