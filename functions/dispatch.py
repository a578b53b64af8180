"""Split one scheduled run of many scrape jobs into shards on the work queue (AWS only).

EventBridge Scheduler invokes it with {"schedule": "rate(10 minutes)", "scheduled_time": ...};
see shared/app/dispatch.py for why a queue. On Heroku, use `python -m functions.scrape --shard I/N`.
"""

from shared.app import dispatch

handler = dispatch.handler
