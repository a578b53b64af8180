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

from shared.errors import EventError


@dataclass(frozen=True)
class Request:
    jobs: list[str] | None = None  # job names; None means every job
    url: str | None = None  # an ad-hoc target instead of jobs
    name: str | None = None
    run_key: str | None = None
    schedule: str | None = None  # dispatcher: the jobs whose AWS schedule expression this is
    shard: tuple[int, int] | None = None  # (I, N): only shard I of N of the jobs (command line)


PLACEHOLDER_PREFIX = "<aws.scheduler."


def parse_all(event) -> list[Request]:
    """The requests in an event: one, or one per record of an SQS event."""
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        requests = []
        for record in event["Records"]:
            try:
                requests.append(parse(json.loads(record["body"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise EventError(f"SQS record {record.get('messageId', '?')} has no JSON body: {exc}") from None
        return requests
    return [parse(event)]


def parse(event) -> Request:
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, not {type(event).__name__}")
    jobs = event.get("jobs")
    if "job" in event:
        jobs = [event["job"]]
    if jobs is not None and (not isinstance(jobs, list) or not all(isinstance(j, str) for j in jobs)):
        raise EventError("event 'job' must be a name, 'jobs' a list of names")
    run_key = event.get("run_key") or event.get("scheduled_time")
    if run_key is None and event.get("detail-type") == "Scheduled Event":
        run_key = event.get("time") or event.get("id")
    if isinstance(run_key, str) and run_key.startswith(PLACEHOLDER_PREFIX):
        raise EventError(f"event carries the unreplaced placeholder {run_key!r}: it was not sent by EventBridge Scheduler")
    url = event.get("url")
    if url is not None and not isinstance(url, str):
        raise EventError("event 'url' must be a string")
    schedule = event.get("schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise EventError("event 'schedule' must be a schedule expression such as rate(10 minutes)")
    return Request(jobs=jobs, url=url, name=event.get("name"), run_key=run_key, schedule=schedule)
