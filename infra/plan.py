"""What runs on AWS, derived from the jobs file: one Lambda function per job kind, one
EventBridge Scheduler schedule per job. The CloudFormation template (infra/template.py) and
the boto3 deploy (infra/deploy.py) both render this plan, so they cannot drift apart.
"""

import json
import os
from dataclasses import dataclass

from shared import config
from shared.schedule import EVERY

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
    job: str
    function: FunctionSpec
    expression: str
    max_event_age: int  # seconds: a run older than the next one is not worth delivering

    @property
    def input(self) -> str:
        # Scheduler replaces the placeholder with the run's scheduled time: the idempotency key.
        return json.dumps({"job": self.job, "scheduled_time": "<aws.scheduler.scheduled-time>"})


FUNCTIONS = {
    # A 10-minute job must finish inside its window; a refresh may poll a Batch API job.
    "scrape": FunctionSpec("scrape", f"{STACK}-scrape", "functions.scrape.handler", 540, 512),
    "refresh": FunctionSpec("refresh", f"{STACK}-carto_refresh", "functions.carto_refresh.handler", 900, 256),
}


def schedules(jobs_schedules: list) -> list[ScheduleSpec]:
    out = []
    for kind, name, schedule in jobs_schedules:
        max_age = EVERY.get(schedule.every, 3600) if not schedule.cron else 3600
        out.append(ScheduleSpec(
            name=f"{kind}-{name}"[:64],
            job=name,
            function=FUNCTIONS[kind],
            expression=schedule.aws_expression(),
            # EventBridge Scheduler accepts 60 s to 24 h.
            max_event_age=max(60, min(max_age, 86400)),
        ))
    return out


def load() -> list[ScheduleSpec]:
    return schedules(config.load_schedules())
