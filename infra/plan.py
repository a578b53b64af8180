"""What runs on AWS, derived from the jobs file: one Lambda function per job kind, one
EventBridge Scheduler schedule per job. The CloudFormation template (infra/template.py) and
the boto3 deploy (infra/deploy.py) both render this plan, so they cannot drift apart.
"""

import hashlib
import json
import os
from dataclasses import dataclass

from shared import config
from shared.kinds import KINDS
from shared.platform.schedule import EVERY

STACK = os.environ.get("STACK_NAME", "scheduled-jobs")
RUNTIME = "python3.13"  # must match LAMBDA_PYTHON in devtools/build.py
ARCHITECTURE = os.environ.get("LAMBDA_ARCH", "x86_64")  # must match the zip's wheels
SECRETS_PATH = f"/{STACK}/"  # SSM Parameter Store folder of SecureString secrets
SECRET_NAMES = ("DATABASE_URL", "CARTO_API_KEY", "CARTO_USERNAME", "NOTIFY_URLS")
RETRY_ATTEMPTS = 3  # Scheduler's retries when Lambda cannot accept the invocation
LOG_RETENTION_DAYS = 30


@dataclass(frozen=True)
class FunctionSpec:
    kind: str  # the jobs file's section: scrape | refresh
    name: str  # Lambda function name
    handler: str
    timeout: int  # seconds
    memory: int  # MB


@dataclass(frozen=True)
class ScheduleSpec:
    name: str  # schedule name, unique in the stack's schedule group
    function: FunctionSpec
    expression: str
    max_event_age: int  # seconds: a run older than the next one is not worth delivering
    payload: tuple  # ("job", name) or ("schedule", expression): what the function is asked to run

    @property
    def input(self) -> str:
        # Scheduler replaces the placeholder with the run's scheduled time: the idempotency key.
        key, value = self.payload
        return json.dumps({key: value, "scheduled_time": "<aws.scheduler.scheduled-time>"})


FUNCTIONS = {
    # One function per job kind, sized by its registration (shared/kinds.py).
    **{kind.name: FunctionSpec(kind.name, f"{STACK}-{kind.command}", kind.handler, kind.timeout, kind.memory)
       for kind in KINDS.values()},
    # Splits a large scrape schedule into shards on the work queue (shared/platform/dispatch.py).
    "dispatch": FunctionSpec("dispatch", f"{STACK}-dispatch", "functions.dispatch.handler", 60, 256),
}
# More scrape jobs than this on one schedule: one dispatcher schedule and queued shards
# instead of one schedule (and one invocation) per job.
DISPATCH_THRESHOLD = int(os.environ.get("DISPATCH_THRESHOLD", "100"))
WORK_QUEUE = f"{STACK}-scrape-shards"
SHARDS_AT_ONCE = 5  # the work queue's MaximumConcurrency: shards running together (DB connections)
WORK_VISIBILITY = 6 * FUNCTIONS["scrape"].timeout  # AWS's advice for a queue feeding a function
WORK_RECEIVES = 3  # tries per shard before its message goes to the dead-letter queue


def environment(spec: FunctionSpec, work_queue_url) -> dict:
    """A function's environment: where its jobs and secrets are, never the secrets themselves."""
    if spec.kind == "dispatch":  # reads only job names and schedules: needs no secret
        return {"JOBS_FILE": "jobs.toml", "WORK_QUEUE_URL": work_queue_url}
    return {"JOBS_FILE": "jobs.toml", "SECRETS_SSM_PATH": SECRETS_PATH}


def schedule_name(wanted: str) -> str:
    """Scheduler names have at most 64 characters; a longer one is cut and given a hash of the
    whole, so two long job names never share a schedule."""
    if len(wanted) <= 64:
        return wanted
    return f"{wanted[:55]}-{hashlib.sha256(wanted.encode()).hexdigest()[:8]}"


def _max_age(schedule) -> int:
    age = EVERY.get(schedule.every, 3600) if not schedule.cron else 3600
    return max(60, min(age, 86400))  # EventBridge Scheduler accepts 60 s to 24 h


def schedules(jobs_schedules: list) -> list[ScheduleSpec]:
    scrape_groups: dict[str, list] = {}
    for kind, name, schedule in jobs_schedules:
        if kind == "scrape":
            scrape_groups.setdefault(schedule.aws_expression(), []).append(name)
    dispatched = {expr for expr, names in scrape_groups.items() if len(names) > DISPATCH_THRESHOLD}
    out, seen = [], set()
    for kind, name, schedule in jobs_schedules:
        expression = schedule.aws_expression()
        if kind == "scrape" and expression in dispatched:
            if expression not in seen:
                seen.add(expression)
                slug = "".join(c if c.isalnum() else "-" for c in expression).strip("-")
                out.append(ScheduleSpec(schedule_name(f"dispatch-{slug}"), FUNCTIONS["dispatch"], expression,
                                        _max_age(schedule), ("schedule", expression)))
            continue
        out.append(ScheduleSpec(schedule_name(f"{kind}-{name}"), FUNCTIONS[kind], expression,
                                _max_age(schedule), ("job", name)))
    return out


def load() -> list[ScheduleSpec]:
    return schedules(config.schedules())
