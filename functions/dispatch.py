"""Split one scheduled run of many scrape jobs into shards on the work queue (AWS only).

EventBridge Scheduler invokes it with {"schedule": "rate(10 minutes)", "scheduled_time": ...};
see shared/dispatch.py for why a queue. On Heroku, use `python -m functions.scrape --shard I/N`.
"""

import logging

from shared import dispatch, events, log

logger = logging.getLogger("dispatch")


def handler(event, context):
    log.setup()
    request = events.parse(event)
    if not request.schedule:
        raise events.EventError("a dispatch event names the schedule of its jobs: {\"schedule\": \"rate(10 minutes)\", ...}")
    import boto3  # only on AWS, where the runtime provides it

    shards = dispatch.shards_for(request.schedule)
    sent = dispatch.send(boto3.client("sqs"), dispatch.work_queue_url(), shards, request.run_key)
    logger.info("%s: %d jobs in %d shards sent for run %s", request.schedule, sum(map(len, shards)), sent,
                request.run_key)
    return {"shards": sent, "jobs": sum(map(len, shards))}
