"""Fan-out on AWS: one scheduled run of many scrape jobs becomes one queue message per shard.

The dispatcher Lambda receives {"schedule": "rate(10 minutes)", "scheduled_time": ...} from
EventBridge Scheduler, takes the scrape jobs with that schedule, splits them into shards of
about SHARD_SIZE by a hash of their names (shared/platform/shard.py), and sends each shard to the
work queue as {"jobs": [...], "scheduled_time": ...}. The scrape function consumes the queue.

Why a queue rather than one asynchronous invoke per shard: the queue's event source mapping
caps how many shards run at once (MaximumConcurrency), which keeps a small PostgreSQL plan
within its connection limit however many shards there are, and a shard that keeps failing
lands in the dead-letter queue after its retries. Each shard stays idempotent: it carries the
scheduled time as its run key.
"""

import json
import math
import os

from shared import config
from shared.errors import ConfigError, WorkFailed
from shared.platform import shard

SHARD_SIZE = 500  # targets per shard, about: at 48 parallel fetches, seconds of work, minutes at worst


class DispatchError(WorkFailed):
    """The work queue refused shards: the run must be retried."""


def shards_for(schedule: str, shard_size: int | None = None) -> list[list[str]]:
    """The names of the scrape jobs run on `schedule`, split into stable shards."""
    shard_size = shard_size or SHARD_SIZE
    names = [name for kind, name, when in config.schedules()
             if kind == "scrape" and when.aws_expression() == schedule]
    if not names:
        return []
    count = math.ceil(len(names) / shard_size)
    by_shard = [[] for _ in range(count)]
    for name in names:
        by_shard[shard.shard_of(name, count) - 1].append(name)
    return [names for names in by_shard if names]


def send(sqs, queue_url: str, shards: list[list[str]], run_key: str | None) -> int:
    """Send one message per shard (ten per request, SQS's batch limit); returns how many."""
    messages = [{"Id": str(i), "MessageBody": json.dumps({"jobs": names, "scheduled_time": run_key})}
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


def handler(event, context) -> dict:
    """The dispatcher's Lambda handler."""
    import logging

    import boto3  # only on AWS, where the runtime provides it

    from shared.platform import events, log

    log.setup()
    request = events.parse(event)
    if not request.schedule:
        raise events.EventError("a dispatch event names the schedule of its jobs: {\"schedule\": \"rate(10 minutes)\", ...}")
    shards = shards_for(request.schedule)
    sent = send(boto3.client("sqs"), work_queue_url(), shards, request.run_key)
    logging.getLogger("dispatch").info("%s: %d jobs in %d shards sent for run %s", request.schedule,
                                       sum(map(len, shards)), sent, request.run_key)
    return {"shards": sent, "jobs": sum(map(len, shards))}
