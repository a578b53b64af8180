"""Fan-out on AWS: one scheduled run of many jobs of the shardable kind becomes one queue message
per shard.

The dispatcher Lambda receives {"schedule": "rate(10 minutes)", "kind": "scrape",
"scheduled_time": ...} from EventBridge Scheduler, takes the jobs of that kind with that
schedule, splits them into shards of about SHARD_SIZE by a hash of their names
(shared/core/shard.py), and sends each shard to the work queue as {"jobs": [...], "run_key": ...}.
The kind's function consumes the queue.

Why a queue rather than one asynchronous invoke per shard: the queue's event source mapping
caps how many shards run at once (MaximumConcurrency), which keeps a small PostgreSQL plan
within its connection limit however many shards there are, and a shard that keeps failing
lands in the dead-letter queue after its retries. Each shard stays idempotent: it carries the
run's key (the scheduled time, or a manual invoke's run_key) as its own.
"""

import json
import math
import os

from shared.app import config, entry, events
from shared.app.kinds import KINDS
from shared.core import shard
from shared.core.errors import ConfigError, EventError, WorkFailed
from shared.core.kind import Kind

SHARD_SIZE = 500  # targets per shard, about: at 48 parallel fetches, seconds of work, minutes at worst


class DispatchError(WorkFailed):
    """The work queue refused shards: the run must be retried."""


def shardable(name: str | None) -> Kind:
    """The kind a dispatch event names (default: the one kind that shards)."""
    kinds = [kind for kind in KINDS.values() if kind.shardable]
    if name is None and len(kinds) == 1:
        return kinds[0]
    for kind in kinds:
        if kind.name == name:
            return kind
    raise EventError(f"event 'kind' must name a kind that shards ({', '.join(k.name for k in kinds)}), not {name!r}")


def shards_for(schedule: str, shard_size: int | None = None, kind: Kind | None = None) -> list[list[str]]:
    """The names of the jobs of `kind` run on `schedule`, split into stable shards."""
    kind = kind or shardable(None)
    shard_size = shard_size or SHARD_SIZE
    names = [name for job_kind, name, when in config.schedules()
             if job_kind == kind.name and when.aws_expression() == schedule]
    if not names:
        return []
    count = math.ceil(len(names) / shard_size)
    by_shard = [[] for _ in range(count)]
    for name in names:
        by_shard[shard.shard_of(name, count) - 1].append(name)
    return [names for names in by_shard if names]


def send(sqs, queue_url: str, shards: list[list[str]], run_key: str | None) -> int:
    """Send one message per shard (ten per request, SQS's batch limit); returns how many. Each
    carries the run's key as `run_key`, so a manual run's key (any text) is accepted as well as
    a scheduled time."""
    messages = [{"Id": str(i), "MessageBody": json.dumps({"jobs": names, "run_key": run_key} if run_key
                                                         else {"jobs": names})}
                for i, names in enumerate(shards)]
    for start in range(0, len(messages), 10):
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=messages[start:start + 10])
        if answer.get("Failed"):
            raise DispatchError(f"the work queue refused {len(answer['Failed'])} shard messages: "
                                + "; ".join(f.get("Message", f.get("Code", "?")) for f in answer["Failed"]))
    return len(messages)


def work_queue_url() -> str:
    url = os.environ.get("WORK_QUEUE_URL")
    if not url:
        raise ConfigError("WORK_QUEUE_URL is not set: the dispatcher needs the work queue's URL")
    return url


def dispatch(event) -> dict:
    """One dispatch event: its schedule's jobs, sent to the work queue in shards."""
    import logging

    import boto3  # only on AWS, where the runtime provides it

    request = events.parse(event)
    if not request.schedule:
        raise EventError("a dispatch event names the schedule of its jobs: {\"schedule\": \"rate(10 minutes)\", ...}")
    kind = shardable(request.kind)
    shards = shards_for(request.schedule, kind=kind)
    sent = send(boto3.client("sqs"), work_queue_url(), shards, request.run_key)
    logging.getLogger("dispatch").info("%s %s: %d jobs in %d shards sent for run %s", kind.name, request.schedule,
                                       sum(map(len, shards)), sent, request.run_key)
    return {"shards": sent, "jobs": sum(map(len, shards))}


def handler(event, context) -> dict:
    """The dispatcher's Lambda handler, through the entry adapter (logging, secrets, errors)."""
    return entry.lambda_call(lambda: dispatch(event))
