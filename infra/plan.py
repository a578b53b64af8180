"""What runs on AWS, derived from the jobs file and the job kinds: one Lambda function per kind,
one EventBridge Scheduler schedule per kind and schedule expression (its input names the jobs,
as one Heroku Scheduler entry runs every job of a frequency), and the connection budget.

infra/template.py renders this plan as the CloudFormation template, which is the only
description of the AWS resources; infra/deploy.py deploys that template.

The connection budget: every scrape or refresh invocation holds one database connection
while it runs, so the number of invocations that may run at once is the number of connections
the functions may hold together. DB_CONNECTIONS (default 10: half of Heroku Postgres
essential-0's 20, leaving room for the release phase, the report and a person's psql) is split
into each function's reserved concurrency: one per schedule of its kind (so no schedule waits
for another), and, when a schedule is large enough to be sharded, the rest (up to
SHARDS_AT_ONCE) for the work queue's maximum concurrency. A jobs file whose schedules need more
is refused with a ConfigError saying what needs what.
"""

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass

from shared.app import config
from shared.app.kinds import KINDS
from shared.core import numbers
from shared.core.errors import ConfigError
from shared.core.schedule import EVERY

STACK = os.environ.get("STACK_NAME", "scheduled-jobs")
RUNTIME = "python3.13"  # must match LAMBDA_PYTHON in devtools/build.py
ARCHITECTURE = os.environ.get("LAMBDA_ARCH", "x86_64")  # must match the zip's wheels
SECRETS_PATH = f"/{STACK}/"  # SSM Parameter Store folder of SecureString secrets
SECRET_NAMES = ("DATABASE_URL", "CARTO_API_KEY", "CARTO_USERNAME", "NOTIFY_URLS")
RETRY_ATTEMPTS = 3  # Scheduler's retries when Lambda cannot accept the invocation
LOG_RETENTION_DAYS = 30
DEFAULT_CONNECTIONS = 10
CONNECTIONS_PER_RUN = 1  # a run's writer (scrape) or its history, then its statement (refresh), in turn


@dataclass(frozen=True)
class FunctionSpec:
    kind: str  # the jobs file's section (scrape | refresh), or "dispatch"
    name: str  # Lambda function name
    handler: str
    timeout: int  # seconds
    memory: int  # MB


def function_specs() -> dict[str, FunctionSpec]:
    """One function per job kind of the kinds list, sized by its `Kind`, and the dispatcher."""
    return {
        **{kind.name: FunctionSpec(kind.name, f"{STACK}-{kind.command}", kind.handler, kind.timeout, kind.memory)
           for kind in KINDS.values()},
        # Splits a large schedule of the shardable kind into shards on the work queue (shared/app/dispatch.py).
        "dispatch": FunctionSpec("dispatch", f"{STACK}-dispatch", "functions.dispatch.handler", 60, 256),
    }


FUNCTIONS = function_specs()  # as the kinds list stands at import (tools and tests read it)
# The kind whose large schedules are split into shards (one work queue serves it; at most one
# kind may shard). More of its jobs than this on one schedule: the schedule invokes the
# dispatcher, which queues shards, instead of one invocation running them all.
SHARDED = next(kind.name for kind in KINDS.values() if kind.shardable)
DISPATCH_THRESHOLD = 100  # jobs; $DISPATCH_THRESHOLD overrides
WORK_QUEUE = f"{STACK}-{SHARDED}-shards"
SHARDS_AT_ONCE = 5  # the most shards running together, budget permitting
MIN_QUEUE_CONCURRENCY = 2  # SQS event source mappings accept a MaximumConcurrency of 2 to 1000
WORK_VISIBILITY = 6 * FUNCTIONS[SHARDED].timeout  # AWS's advice for a queue feeding a function
WORK_RECEIVES = 3  # tries per shard before its message goes to the dead-letter queue


@dataclass(frozen=True)
class ScheduleSpec:
    name: str  # schedule name, unique in the stack's schedule group
    function: FunctionSpec
    expression: str
    max_event_age: int  # seconds: a run older than the next one is not worth delivering
    jobs: tuple[str, ...]  # the jobs it runs (a dispatcher schedule: the jobs it shards)
    interval: int | None = None  # seconds between runs; None for a cron expression

    @property
    def group(self) -> str:
        """Its own schedule group: EventBridge Scheduler counts invocations per group, so each
        schedule's missing runs can raise an alarm of its own."""
        return f"{STACK}-{hashlib.sha256(self.name.encode()).hexdigest()[:8]}"

    @property
    def input(self) -> str:
        # Scheduler replaces the placeholder with the run's scheduled time: the idempotency key.
        if self.function.kind == "dispatch":  # the dispatcher looks its jobs up by schedule
            what = {"schedule": self.expression, "kind": SHARDED}
        else:
            what = {"jobs": list(self.jobs)}
        return json.dumps({**what, "scheduled_time": "<aws.scheduler.scheduled-time>"})


@dataclass(frozen=True)
class Plan:
    schedules: tuple[ScheduleSpec, ...]
    functions: tuple[FunctionSpec, ...]  # every kind's, and the dispatcher when a schedule uses it
    reserved: dict  # function kind -> reserved concurrency (the dispatcher holds no connection: none)
    queue_concurrency: int  # the work queue's MaximumConcurrency; 0: no queue
    connections: int  # DB_CONNECTIONS

    @property
    def sharding(self) -> bool:
        return self.queue_concurrency > 0


def schedule_name(kind: str, expression: str) -> str:
    """A readable, stable name of at most 64 characters (Scheduler's limit); the hash keeps
    expressions that read alike (`cron(0 4 * * ? *)`, `cron(0 4 ? * * *)`) apart."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", expression).strip("-")
    digest = hashlib.sha256(expression.encode()).hexdigest()[:8]
    return f"{kind}-{slug[:63 - len(kind) - 10].strip('-')}-{digest}"


def _max_age(schedule) -> int:
    age = EVERY.get(schedule.every, 3600) if not schedule.cron else 3600
    return max(60, min(age, 86400))  # EventBridge Scheduler accepts 60 s to 24 h


def schedules(jobs_schedules: list) -> tuple[ScheduleSpec, ...]:
    """One schedule per kind and expression, in the jobs file's order; one of the shardable kind
    with more than DISPATCH_THRESHOLD jobs goes through the dispatcher."""
    groups: dict[tuple[str, str], list] = {}
    for kind, name, schedule in jobs_schedules:
        groups.setdefault((kind, schedule.aws_expression()), []).append((name, schedule))
    specs = function_specs()
    out = []
    for (kind, expression), members in groups.items():
        names = tuple(name for name, _ in members)
        function = specs[kind]
        if kind == SHARDED and len(names) > dispatch_threshold():
            function = specs["dispatch"]
        out.append(ScheduleSpec(schedule_name(function.kind, expression), function, expression,
                                _max_age(members[0][1]), names, members[0][1].interval))
    return tuple(out)


def connections_from_environment() -> int:
    value = os.environ.get("DB_CONNECTIONS", str(DEFAULT_CONNECTIONS))
    try:
        return numbers.whole(value, "DB_CONNECTIONS", 1, 10_000, " of database connections")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def dispatch_threshold() -> int:
    value = os.environ.get("DISPATCH_THRESHOLD")
    if value is None:
        return DISPATCH_THRESHOLD
    try:
        return numbers.whole(value, "DISPATCH_THRESHOLD", 1, 100_000, " of jobs")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# CloudFormation's stack names; 50 characters at most, so that every name made from it (the
# longest: "<stack>-carto_refresh", a Lambda function's at most 64) stays within AWS's limits.
STACK_NAME_RULE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,49}")
ARCHITECTURES = ("x86_64", "arm64")


def check_settings() -> None:
    """The deploy settings, checked before anything is planned or sent to AWS: one line each."""
    if not STACK_NAME_RULE.fullmatch(STACK):
        raise ConfigError(f"STACK_NAME={STACK[:80]!r} must be 1 to 50 letters, digits and hyphens, starting with a"
                          " letter (CloudFormation's stack names; the functions, queues and schedules are named"
                          " after it)")
    if ARCHITECTURE not in ARCHITECTURES:
        raise ConfigError(f"LAMBDA_ARCH={ARCHITECTURE[:40]!r} must be {' or '.join(ARCHITECTURES)}")
    dispatch_threshold()


def budget(specs: tuple[ScheduleSpec, ...], connections: int, source: str = "the jobs file") -> tuple[dict, int]:
    """(reserved concurrency per function kind, the work queue's maximum concurrency) within
    `connections`; ConfigError when the schedules cannot fit."""
    direct = Counter(s.function.kind for s in specs if s.function.kind != "dispatch")
    sharding = any(s.function.kind == "dispatch" for s in specs)
    # Every kind's function may be invoked (by hand, if no schedule): at least one each.
    reserved = {kind: max(1, direct[kind]) for kind in KINDS}
    need = sum(reserved.values()) + (MIN_QUEUE_CONCURRENCY if sharding else 0)
    runs_allowed = connections // CONNECTIONS_PER_RUN
    if need > runs_allowed:
        parts = [f"{kind}: {count} ({'1 per schedule' if direct[kind] else 'no schedule of its own: 1 for runs by hand'})"
                 for kind, count in reserved.items()]
        if sharding:
            parts.append(f"the shard queue: {MIN_QUEUE_CONCURRENCY} (the least SQS allows)")
        raise ConfigError(
            f"{source}: its schedules need {need * CONNECTIONS_PER_RUN} database connections at once"
            f" ({', '.join(parts)}), more than DB_CONNECTIONS={connections}: raise DB_CONNECTIONS (within"
            " your database's connection limit) or give more jobs the same schedule")
    queue = min(SHARDS_AT_ONCE, runs_allowed - sum(reserved.values())) if sharding else 0
    reserved[SHARDED] += queue
    return reserved, queue


def make(jobs_schedules: list, connections: int = DEFAULT_CONNECTIONS, source: str = "the jobs file") -> Plan:
    specs = schedules(jobs_schedules)
    reserved, queue = budget(specs, connections, source)
    functions = tuple(f for kind, f in function_specs().items() if kind != "dispatch" or queue)
    return Plan(specs, functions, reserved, queue, connections)


def load() -> Plan:
    """The plan for the jobs file ($JOBS_TOML, $JOBS_FILE or ./jobs.toml) and $DB_CONNECTIONS."""
    check_settings()
    return make(config.schedules(), connections_from_environment(), config.jobs_source())


def environment(spec: FunctionSpec, work_queue_url) -> dict:
    """A function's environment: where its jobs and secrets are, never the secrets themselves."""
    if spec.kind == "dispatch":  # reads only job names and schedules: needs no secret
        return {"JOBS_FILE": "jobs.toml", "WORK_QUEUE_URL": work_queue_url}
    return {"JOBS_FILE": "jobs.toml", "SECRETS_SSM_PATH": SECRETS_PATH}
