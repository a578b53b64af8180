"""The CloudFormation template: the one description of what runs on AWS, rendered from the plan.

    python -m infra.template    (make template)  ->  dist/template.json

`make deploy-aws` deploys this template (infra/deploy.py); `aws cloudformation deploy` can too.
The code comes from S3 (parameters CodeBucket and CodeKey: dist/lambda.zip, uploaded); secrets
come from SSM Parameter Store SecureStrings under the stack's folder, read by the functions at
start-up, never from plain environment variables.
"""

import hashlib
import json
import re
import sys
from pathlib import Path

from infra import plan
from shared.app import entry
from shared.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def logical_id(*parts: str) -> str:
    """CloudFormation's logical IDs are letters and digits: "scrape", "LogGroup" -> ScrapeLogGroup."""
    return "".join(word[:1].upper() + word[1:] for part in parts for word in re.split(r"[^A-Za-z0-9]+", part))


def _sub(text: str) -> dict:
    return {"Fn::Sub": text}


def _arn(resource: str) -> dict:
    return {"Fn::GetAtt": [resource, "Arn"]}


def render(p: plan.Plan) -> dict:
    resources = {
        # Failed runs land here: schedules Lambda could not accept, invocations that still failed
        # after Lambda's two retries, shards that failed WORK_RECEIVES times.
        "DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"QueueName": f"{plan.STACK}-dead-letters", "MessageRetentionPeriod": 1209600},
        },
    }
    resources.update(_alerts(p))
    if p.schedules:
        resources["SchedulerRole"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": _trust("scheduler.amazonaws.com", account_condition=True),
                "Policies": [_policy("invoke-jobs", [
                    {"Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                     "Resource": [_arn(logical_id(kind, "Function")) for kind in _targets(p)]},
                    {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": _arn("DeadLetterQueue")},
                ])],
            },
        }
    if p.sharding:
        resources["WorkQueue"] = {  # shards of large scrape schedules, from the dispatcher to scrape
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": plan.WORK_QUEUE,
                "VisibilityTimeout": plan.WORK_VISIBILITY,
                "RedrivePolicy": {"deadLetterTargetArn": _arn("DeadLetterQueue"),
                                  "maxReceiveCount": plan.WORK_RECEIVES},
            },
        }
        resources["WorkQueueMapping"] = {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "EventSourceArn": _arn("WorkQueue"),
                "FunctionName": {"Ref": logical_id(plan.SHARDED, "Function")},
                "BatchSize": 1,
                # Shards running at once: the connection budget's share for the queue.
                "ScalingConfig": {"MaximumConcurrency": p.queue_concurrency},
            },
        }
    for f in p.functions:
        resources.update(_function(p, f))
    for s in p.schedules:
        # Logical IDs keep only letters and digits: a hash of the name keeps look-alikes apart.
        schedule_id = logical_id("schedule", s.name) + hashlib.sha256(s.name.encode()).hexdigest()[:8]
        resources[schedule_id + "Group"] = {"Type": "AWS::Scheduler::ScheduleGroup", "Properties": {"Name": s.group}}
        if s.interval:  # a schedule that stops (disabled, deleted, failing to invoke) alarms
            resources[schedule_id + "MissedAlarm"] = _alarm(
                f"{plan.STACK} {s.name}: no invocation for twice its interval", "AWS/Scheduler",
                "InvocationAttemptCount", [("ScheduleGroup", s.group)], "Sum", s.interval, "LessThanThreshold", 1,
                missing="breaching", periods=2)
        resources[schedule_id] = {
            "Type": "AWS::Scheduler::Schedule",
            "DependsOn": schedule_id + "Group",
            "Properties": {
                "Name": s.name,
                "GroupName": s.group,
                "ScheduleExpression": s.expression,
                "ScheduleExpressionTimezone": "UTC",
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "State": "ENABLED",
                "Target": {
                    "Arn": _arn(logical_id(s.function.kind, "Function")),
                    "RoleArn": _arn("SchedulerRole"),
                    "Input": s.input,
                    "RetryPolicy": {"MaximumEventAgeInSeconds": s.max_event_age,
                                    "MaximumRetryAttempts": plan.RETRY_ATTEMPTS},
                    "DeadLetterConfig": {"Arn": _arn("DeadLetterQueue")},
                },
            },
        }
    check(p, resources)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"{plan.STACK}: scheduled {' and '.join(plan.KINDS)} jobs (generated from the jobs file)",
        "Parameters": {
            "CodeBucket": {"Type": "String", "Description": "S3 bucket holding dist/lambda.zip"},
            "CodeKey": {"Type": "String", "Default": "lambda.zip", "Description": "S3 key of the zip"},
            "AlertEmail": {"Type": "String", "Default": "", "Description": "an address the alarms' topic mails (ALERT_EMAIL)"},
        },
        "Conditions": {"HasAlertEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]}},
        "Resources": resources,
        "Outputs": {
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "AlertTopicArn": {"Value": {"Ref": "AlertTopic"}, "Description": "subscribe anyone else to the alarms here"},
            "DatabaseConnections": {"Value": str(sum(p.reserved.values()) * plan.CONNECTIONS_PER_RUN),
                                    "Description": f"at most, of DB_CONNECTIONS={p.connections}"},
        },
    }


# What CloudFormation refuses, checked before anything on AWS changes: its resource limit, and
# the physical names AWS accepts for each type (property, longest, characters).
MAX_RESOURCES = 500
NAME_RULES = {
    "AWS::Lambda::Function": ("FunctionName", 64, r"[A-Za-z0-9_-]+"),
    "AWS::SQS::Queue": ("QueueName", 80, r"[A-Za-z0-9_-]+"),
    "AWS::Scheduler::Schedule": ("Name", 64, r"[0-9A-Za-z_.-]+"),
    "AWS::Scheduler::ScheduleGroup": ("Name", 64, r"[0-9A-Za-z_.-]+"),
    "AWS::Logs::LogGroup": ("LogGroupName", 512, r"[A-Za-z0-9_./#-]+"),
    "AWS::IAM::Role": ("RoleName", 64, r"[A-Za-z0-9_+=,.@-]+"),
    "AWS::SNS::Topic": ("TopicName", 256, r"[A-Za-z0-9_-]+"),
    "AWS::CloudWatch::Alarm": ("AlarmName", 255, r"[^\x00-\x1f\x7f]+"),
}


def check(p: plan.Plan, resources: dict) -> None:
    """ConfigError (one line) for a template CloudFormation would refuse."""
    if len(resources) > MAX_RESOURCES:
        per = len(resources) // max(1, len(p.schedules))
        raise ConfigError(f"the template needs {len(resources)} AWS resources, more than CloudFormation's"
                          f" {MAX_RESOURCES} per stack: {len(p.schedules)} distinct schedules; give more jobs the"
                          " same schedule (each distinct schedule adds its own resources)"
                          + (f", about {per} each" if per > 1 else ""))
    for logical, resource in resources.items():
        rule = NAME_RULES.get(resource["Type"])
        if rule is None:
            continue
        key, longest, chars = rule
        name = resource.get("Properties", {}).get(key)
        if isinstance(name, str) and not (len(name) <= longest and re.fullmatch(chars, name)):
            raise ConfigError(f"{resource['Type']} {logical}: {key} {name[:80]!r} is not a name AWS accepts"
                              f" (at most {longest} of {chars.strip('[]+')}): shorten STACK_NAME or the job's"
                              " schedule")


def _alerts(p: plan.Plan) -> dict:
    """One SNS topic every alarm tells (ALERT_EMAIL subscribes an address at deploy; any other
    subscriber can be added to the topic): each function's errors and the dead-letter queue's
    messages. The schedules' own alarms are made with them in render()."""
    resources = {
        "AlertTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{plan.STACK}-alerts"}},
        "AlertEmailSubscription": {
            "Type": "AWS::SNS::Subscription", "Condition": "HasAlertEmail",
            "Properties": {"TopicArn": {"Ref": "AlertTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlertEmail"}},
        },
        "DeadLetterAlarm": _alarm(f"{plan.STACK}: runs in the dead-letter queue", "AWS/SQS",
                                  "ApproximateNumberOfMessagesVisible",
                                  [("QueueName", {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]})], "Maximum", 300,
                                  "GreaterThanThreshold", 0),
    }
    for f in p.functions:
        resources[logical_id(f.kind, "ErrorsAlarm")] = _alarm(
            f"{plan.STACK} {f.kind}: failed invocations", "AWS/Lambda", "Errors",
            [("FunctionName", {"Ref": logical_id(f.kind, "Function")})], "Sum", 300, "GreaterThanThreshold", 0)
    return resources


def _alarm(name: str, namespace: str, metric: str, dimensions: list, statistic: str, period: int, comparison: str,
           threshold: float, missing: str = "notBreaching", periods: int = 1) -> dict:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": name, "Namespace": namespace, "MetricName": metric,
        "Dimensions": [{"Name": key, "Value": value} for key, value in dimensions],
        "Statistic": statistic, "Period": period, "EvaluationPeriods": periods, "DatapointsToAlarm": periods,
        "ComparisonOperator": comparison, "Threshold": threshold, "TreatMissingData": missing,
        "AlarmActions": [{"Ref": "AlertTopic"}], "OKActions": [{"Ref": "AlertTopic"}]}}


def _targets(p: plan.Plan) -> list[str]:
    """The function kinds the schedules invoke, in a stable order."""
    return sorted({s.function.kind for s in p.schedules})


def _function(p: plan.Plan, f: plan.FunctionSpec) -> dict:
    """A function, its log group (with the retention the README promises) and its own role."""
    function, role, logs = logical_id(f.kind, "Function"), logical_id(f.kind, "Role"), logical_id(f.kind, "LogGroup")
    statements = [
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": _sub(f"${{{logs}.Arn}}")},  # the log group's ARN ends with :*, covering its streams
        {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": _arn("DeadLetterQueue")},
    ]
    if f.kind == "dispatch":
        statements.append({"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": _arn("WorkQueue")})
    else:
        statements.append({"Effect": "Allow", "Action": ["ssm:GetParametersByPath"], "Resource": _sub(
            f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter{plan.SECRETS_PATH.rstrip('/')}")})
    if f.kind == plan.SHARDED and p.sharding:
        statements.append({"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage",
                                                         "sqs:GetQueueAttributes"], "Resource": _arn("WorkQueue")})
    properties = {
        "FunctionName": f.name,
        "Runtime": plan.RUNTIME,
        "Architectures": [plan.ARCHITECTURE],
        "Handler": f.handler,
        "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
        "Role": _arn(role),
        "Timeout": f.timeout,
        "MemorySize": f.memory,
        "Environment": {"Variables": plan.environment(f, {"Ref": "WorkQueue"} if p.sharding else None)},
        "DeadLetterConfig": {"TargetArn": _arn("DeadLetterQueue")},
    }
    if f.kind in p.reserved:  # the connection budget's share; the dispatcher holds no connection
        properties["ReservedConcurrentExecutions"] = p.reserved[f.kind]
    return {
        logs: {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": f"/aws/lambda/{f.name}", "RetentionInDays": plan.LOG_RETENTION_DAYS},
        },
        role: {
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": _trust("lambda.amazonaws.com"),
                           "Policies": [_policy(f"run-{f.kind}", statements)]},
        },
        function: {"Type": "AWS::Lambda::Function", "DependsOn": logs, "Properties": properties},
    }


def _policy(name: str, statements: list) -> dict:
    return {"PolicyName": name, "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}


def _trust(service: str, account_condition: bool = False) -> dict:
    statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if account_condition:  # only schedules of this account may use the role (confused deputy)
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    return {"Version": "2012-10-17", "Statement": [statement]}


def write(p: plan.Plan, out: Path = ROOT / "dist" / "template.json") -> Path:
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(render(p), indent=2) + "\n")
    return out


def main() -> int:
    def body() -> int:
        out = write(plan.load())
        print(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out)
        return 0

    return entry.run_command(body)


if __name__ == "__main__":
    sys.exit(main())
