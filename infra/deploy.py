"""Create or update everything on AWS with boto3: `make deploy-aws`.

    python -m infra.deploy [--zip dist/lambda.zip] [--secrets-from-env]

Idempotent: run it after every change to the code or the jobs file. It
1. stores secrets found in the environment (--secrets-from-env) as SSM SecureStrings,
2. creates the dead-letter queue and the two IAM roles (least privilege, as in the template),
3. creates or updates one Lambda function per job kind with dist/lambda.zip,
4. creates or updates one EventBridge Scheduler schedule per job, and deletes the schedules of
   jobs no longer in the jobs file.
Uses the standard AWS credential chain and region (AWS_PROFILE, AWS_REGION, ...);
AWS_ENDPOINT_URL points it at a test endpoint such as moto's server.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

from infra import plan, template
from shared import config

ROOT = Path(__file__).resolve().parent.parent


def _exists(error: ClientError, *codes: str) -> bool:
    return error.response["Error"]["Code"] in codes


def put_secrets(ssm) -> list[str]:
    stored = []
    for name in plan.SECRET_NAMES:
        if os.environ.get(name):
            ssm.put_parameter(Name=f"{plan.SECRETS_PATH}{name}", Value=os.environ[name],
                              Type="SecureString", Overwrite=True)
            stored.append(name)
    return stored


def ensure_queue(sqs, name: str, attributes: dict) -> tuple[str, str]:
    """(url, arn) of the queue, created or brought to `attributes`."""
    try:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as error:
        if not _exists(error, "QueueAlreadyExists", "QueueNameExists"):
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def ensure_work_queue_mapping(lam, queue_arn: str, function_name: str) -> None:
    settings = dict(BatchSize=1, ScalingConfig={"MaximumConcurrency": plan.SHARDS_AT_ONCE})
    found = lam.list_event_source_mappings(EventSourceArn=queue_arn, FunctionName=function_name)["EventSourceMappings"]
    if found:
        lam.update_event_source_mapping(UUID=found[0]["UUID"], FunctionName=function_name, **settings)
    else:
        lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=function_name, **settings)


def ensure_role(iam, name: str, service: str, policy: dict) -> str:
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError as error:
        if not _exists(error, "NoSuchEntity"):
            raise
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(template._trust(service)))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    return arn


def ensure_function(lam, spec: plan.FunctionSpec, role_arn: str, queue_arn: str, code: bytes,
                    work_queue_url: str) -> str:
    settings = dict(
        Runtime=plan.RUNTIME, Handler=spec.handler, Role=role_arn, Timeout=spec.timeout,
        MemorySize=spec.memory,
        Environment={"Variables": plan.environment(spec, work_queue_url)},
        DeadLetterConfig={"TargetArn": queue_arn},
    )
    try:
        lam.get_function(FunctionName=spec.name)
    except ClientError as error:
        if not _exists(error, "ResourceNotFoundException"):
            raise
        return lam.create_function(FunctionName=spec.name, Code={"ZipFile": code},
                                   Architectures=[plan.ARCHITECTURE], **settings)["FunctionArn"]
    lam.update_function_code(FunctionName=spec.name, ZipFile=code, Architectures=[plan.ARCHITECTURE])
    _wait_updated(lam, spec.name)
    return lam.update_function_configuration(FunctionName=spec.name, **settings)["FunctionArn"]


def _wait_updated(lam, name: str) -> None:
    """A function accepts one update at a time: wait for the code update to finish."""
    for _ in range(60):
        status = lam.get_function_configuration(FunctionName=name).get("LastUpdateStatus", "Successful")
        if status != "InProgress":
            return
        time.sleep(1)


def ensure_schedules(scheduler, schedules, function_arns, role_arn, queue_arn) -> tuple[int, int]:
    try:
        scheduler.get_schedule_group(Name=plan.STACK)
    except ClientError as error:
        if not _exists(error, "ResourceNotFoundException"):
            raise
        scheduler.create_schedule_group(Name=plan.STACK)
    existing = {s["Name"] for page in scheduler.get_paginator("list_schedules").paginate(GroupName=plan.STACK)
                for s in page["Schedules"]}
    for s in schedules:
        settings = dict(
            Name=s.name, GroupName=plan.STACK, ScheduleExpression=s.expression,
            ScheduleExpressionTimezone="UTC", FlexibleTimeWindow={"Mode": "OFF"}, State="ENABLED",
            Target={
                "Arn": function_arns[s.function.kind], "RoleArn": role_arn, "Input": s.input,
                "RetryPolicy": {"MaximumEventAgeInSeconds": s.max_event_age,
                                "MaximumRetryAttempts": plan.RETRY_ATTEMPTS},
                "DeadLetterConfig": {"Arn": queue_arn},
            },
        )
        (scheduler.update_schedule if s.name in existing else scheduler.create_schedule)(**settings)
    stale = existing - {s.name for s in schedules}
    for name in sorted(stale):
        scheduler.delete_schedule(Name=name, GroupName=plan.STACK)
    return len(schedules), len(stale)


def deploy(zip_path: Path, secrets_from_env: bool = False, session=None) -> dict:
    session = session or boto3.session.Session()
    schedules = plan.load()
    code = zip_path.read_bytes()
    account = session.client("sts").get_caller_identity()["Account"]
    region = session.region_name
    summary = {}
    if secrets_from_env:
        summary["secrets"] = put_secrets(session.client("ssm"))
    sqs = session.client("sqs")
    _, queue_arn = ensure_queue(sqs, f"{plan.STACK}-dead-letters", {"MessageRetentionPeriod": "1209600"})
    work_url, work_arn = ensure_queue(sqs, plan.WORK_QUEUE, {
        "VisibilityTimeout": str(plan.WORK_VISIBILITY),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": queue_arn, "maxReceiveCount": plan.WORK_RECEIVES})})
    iam = session.client("iam")
    function_role = ensure_role(iam, f"{plan.STACK}-functions", "lambda.amazonaws.com", {
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{f.name}:*"
                          for f in plan.FUNCTIONS.values()]},
            {"Effect": "Allow", "Action": ["ssm:GetParametersByPath"],
             "Resource": f"arn:aws:ssm:{region}:{account}:parameter{plan.SECRETS_PATH.rstrip('/')}"},
            {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": [queue_arn, work_arn]},
            {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
             "Resource": work_arn},
        ]})
    lam = session.client("lambda")
    function_arns = {kind: ensure_function(lam, spec, function_role, queue_arn, code, work_url)
                     for kind, spec in plan.FUNCTIONS.items()}
    ensure_work_queue_mapping(lam, work_arn, plan.FUNCTIONS["scrape"].name)
    scheduler_role = ensure_role(iam, f"{plan.STACK}-scheduler", "scheduler.amazonaws.com", {
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": sorted(function_arns.values())},
            {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": queue_arn},
        ]})
    created, deleted = ensure_schedules(session.client("scheduler"), schedules, function_arns, scheduler_role, queue_arn)
    summary.update(functions=sorted(function_arns), schedules=created, deleted_schedules=deleted,
                   dead_letter_queue=queue_arn, work_queue=work_arn)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make deploy-aws")
    parser.add_argument("--zip", type=Path, default=ROOT / "dist" / "lambda.zip")
    parser.add_argument("--secrets-from-env", action="store_true",
                        help=f"store {', '.join(plan.SECRET_NAMES)} from the environment in SSM")
    args = parser.parse_args(argv)
    if not args.zip.exists():
        print(f"error: {args.zip} not found: run `make build` first", file=sys.stderr)
        return 2
    try:
        summary = deploy(args.zip, args.secrets_from_env)
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"error: AWS refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
