"""Render the AWS plan as a CloudFormation template: `make template` -> dist/template.json.

For those who deploy with CloudFormation (`aws cloudformation deploy`) rather than
`make deploy-aws`. The code comes from S3 (CodeBucket/CodeKey: upload dist/lambda.zip);
secrets come from SSM Parameter Store SecureStrings under the stack's folder, read by the
functions at start-up, never from plain environment variables.
"""

import hashlib
import json
import re
import sys
from pathlib import Path

from infra import plan

ROOT = Path(__file__).resolve().parent.parent


def logical_id(*parts: str) -> str:
    return "".join(re.sub(r"[^A-Za-z0-9]", "", p.title()) for p in parts)


def render(schedules: list[plan.ScheduleSpec]) -> dict:
    sub = lambda s: {"Fn::Sub": s}  # noqa: E731
    resources = {
        "DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"MessageRetentionPeriod": 1209600},  # 14 days to look at failed runs
        },
        "WorkQueue": {  # shards of large scrape schedules, from the dispatcher to the scrape function
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": plan.WORK_QUEUE,
                "VisibilityTimeout": plan.WORK_VISIBILITY,
                "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                                  "maxReceiveCount": plan.WORK_RECEIVES},
            },
        },
        "WorkQueueMapping": {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "EventSourceArn": {"Fn::GetAtt": ["WorkQueue", "Arn"]},
                "FunctionName": {"Ref": logical_id("scrape", "Function")},
                "BatchSize": 1,
                "ScalingConfig": {"MaximumConcurrency": plan.SHARDS_AT_ONCE},
            },
        },
        "FunctionRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": _trust("lambda.amazonaws.com"),
                "Policies": [{
                    "PolicyName": "run-jobs",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                         "Resource": [sub(f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/{f.name}:*")
                                      for f in plan.FUNCTIONS.values()]},
                        {"Effect": "Allow", "Action": ["ssm:GetParametersByPath"],
                         "Resource": sub(f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter{plan.SECRETS_PATH.rstrip('/')}")},
                        {"Effect": "Allow", "Action": ["sqs:SendMessage"],
                         "Resource": [{"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}, {"Fn::GetAtt": ["WorkQueue", "Arn"]}]},
                        {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                         "Resource": {"Fn::GetAtt": ["WorkQueue", "Arn"]}},
                    ]},
                }],
            },
        },
        "SchedulerRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": _trust("scheduler.amazonaws.com"),
                "Policies": [{
                    "PolicyName": "invoke-jobs",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                         "Resource": [{"Fn::GetAtt": [logical_id(f.kind, "Function"), "Arn"]}
                                      for f in plan.FUNCTIONS.values()]},
                        {"Effect": "Allow", "Action": ["sqs:SendMessage"],
                         "Resource": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
                    ]},
                }],
            },
        },
        "ScheduleGroup": {"Type": "AWS::Scheduler::ScheduleGroup", "Properties": {"Name": plan.STACK}},
    }
    for f in plan.FUNCTIONS.values():
        resources[logical_id(f.kind, "LogGroup")] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": f"/aws/lambda/{f.name}", "RetentionInDays": plan.LOG_RETENTION_DAYS},
        }
        resources[logical_id(f.kind, "Function")] = {
            "Type": "AWS::Lambda::Function",
            "DependsOn": logical_id(f.kind, "LogGroup"),
            "Properties": {
                "FunctionName": f.name,
                "Runtime": plan.RUNTIME,
                "Architectures": [plan.ARCHITECTURE],
                "Handler": f.handler,
                "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
                "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]},
                "Timeout": f.timeout,
                "MemorySize": f.memory,
                "Environment": {"Variables": plan.environment(f, {"Ref": "WorkQueue"})},
                # Invocations that still fail after Lambda's own two retries land here.
                "DeadLetterConfig": {"TargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
            },
        }
    for s in schedules:
        # Logical IDs keep only letters and digits: a hash of the name keeps feed-1 and feed_1 apart.
        resources[logical_id("schedule", s.name) + hashlib.sha256(s.name.encode()).hexdigest()[:8]] = {
            "Type": "AWS::Scheduler::Schedule",
            "Properties": {
                "Name": s.name,
                "GroupName": {"Ref": "ScheduleGroup"},
                "ScheduleExpression": s.expression,
                "ScheduleExpressionTimezone": "UTC",
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "State": "ENABLED",
                "Target": {
                    "Arn": {"Fn::GetAtt": [logical_id(s.function.kind, "Function"), "Arn"]},
                    "RoleArn": {"Fn::GetAtt": ["SchedulerRole", "Arn"]},
                    "Input": s.input,
                    "RetryPolicy": {"MaximumEventAgeInSeconds": s.max_event_age,
                                    "MaximumRetryAttempts": plan.RETRY_ATTEMPTS},
                    "DeadLetterConfig": {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
                },
            },
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"{plan.STACK}: scheduled scrape and refresh jobs (generated from the jobs file)",
        "Parameters": {
            "CodeBucket": {"Type": "String", "Description": "S3 bucket holding dist/lambda.zip"},
            "CodeKey": {"Type": "String", "Default": "lambda.zip", "Description": "S3 key of the zip"},
        },
        "Resources": resources,
        "Outputs": {"DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}}},
    }


def _trust(service: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}


def main() -> int:
    out = ROOT / "dist" / "template.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(render(plan.load()), indent=2) + "\n")
    print(f"{out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
