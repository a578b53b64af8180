"""Deploy the CloudFormation template with boto3, or tear it down: `make deploy-aws`, `make destroy-aws`.

    python -m infra.deploy [--zip dist/lambda.zip] [--secrets-from-env] [--bucket NAME]
    python -m infra.deploy destroy [--with-secrets] [--bucket NAME]

Deploying
1. checks the jobs file and plans (infra/plan.py) before touching AWS, and that the zip ships
   that same jobs file;
2. stores secrets found in the environment as SSM SecureStrings (--secrets-from-env);
3. uploads the zip and the template to an artifacts bucket (created if missing), each under a
   key naming its content, so changed code is a changed template;
4. creates or updates the stack through a change set, waits for it, and on failure says in one
   line which resource failed and why (CloudFormation has rolled back by then).
CloudFormation creates everything the template describes, in order, and waits for what AWS
needs time for (a role Lambda cannot assume yet). Nothing else creates AWS resources.

Destroying deletes the stack and this deploy's artifacts; the SSM secrets stay unless
--with-secrets.

Standard AWS configuration: AWS_PROFILE, AWS_REGION or AWS_DEFAULT_REGION (or the profile's
region), the usual credential chain; AWS_ENDPOINT_URL points boto3 at a test endpoint.
"""

import argparse
import hashlib
import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from infra import plan, template
from shared.app import config, entry
from shared.core import log
from shared.core.errors import ConfigError, JobError

ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 5  # between looks at a change set or stack while CloudFormation works
WAIT_LIMIT = 3600  # seconds before giving up watching (CloudFormation carries on regardless)
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
# Answers that mean the credentials or their permissions are wrong: fix them, then rerun.
REFUSED = {"InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException",
           "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException", "AuthFailure"}


class DeployFailed(JobError):
    """CloudFormation could not create, update or delete the stack (exit 1)."""


@dataclass(frozen=True)
class Aws:
    session: object  # boto3.session.Session
    region: str
    account: str

    def client(self, name: str):
        return self.session.client(name, region_name=self.region)


def connect() -> Aws:
    """A boto3 session from the standard configuration, checked: a missing region, profile or
    credentials is one ConfigError naming what to set."""
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    # boto3 reads AWS_DEFAULT_REGION and the profile, not AWS_REGION, which the AWS CLI reads first.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    try:
        session = boto3.session.Session(region_name=region)
        region = session.region_name
        credentials = session.get_credentials()
    except ProfileNotFound as exc:
        raise ConfigError(f"AWS: {exc}: check AWS_PROFILE (`aws configure list-profiles`)") from None
    except BotoCoreError as exc:
        raise ConfigError(f"AWS configuration: {log.redact(str(exc))}") from None
    if not region:
        raise ConfigError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or a region in your AWS_PROFILE")
    if credentials is None:
        raise ConfigError("no AWS credentials: set AWS_PROFILE (see `aws configure`), or AWS_ACCESS_KEY_ID and"
                          " AWS_SECRET_ACCESS_KEY")
    account = aws_call(lambda: session.client("sts", region_name=region).get_caller_identity()["Account"])
    return Aws(session, region, account)


def aws_call(call):
    """Run one AWS call; its failure becomes one line (aws_error)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc) from None


def aws_error(exc: Exception) -> JobError:
    """ConfigError when the credentials or their permissions were refused (fix them, rerun),
    JobError otherwise; one line, redacted."""
    error = getattr(exc, "response", {}).get("Error", {})
    if not error:
        return JobError(log.redact(f"AWS: {exc}"))
    message = log.redact(" ".join(f"AWS refused: {error.get('Code', '?')}: {error.get('Message', exc)}".split()))
    return (ConfigError if error.get("Code") in REFUSED else JobError)(message)


# --- artifacts ------------------------------------------------------------------------------

def artifacts_bucket(aws: Aws, given: str | None = None) -> str:
    """--bucket, $ARTIFACTS_BUCKET, or this stack's own bucket for the account and region."""
    return given or os.environ.get("ARTIFACTS_BUCKET") or own_bucket(aws)


def own_bucket(aws: Aws) -> str:
    name = f"{plan.STACK}-artifacts-{aws.account}-{aws.region}".lower()
    if len(name) > 63:  # S3's limit
        name = f"{name[:54]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


def bucket_exists(aws: Aws, bucket: str) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        aws.client("s3").head_bucket(Bucket=bucket)
        return True
    except BotoCoreError as exc:
        raise aws_error(exc) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied"):
            raise ConfigError(f"S3 bucket {bucket} exists but is not yours to use: pass --bucket NAME"
                              " (or set ARTIFACTS_BUCKET)") from None
        raise aws_error(exc) from None


def ensure_bucket(aws: Aws, bucket: str) -> None:
    if bucket_exists(aws, bucket):
        return
    s3 = aws.client("s3")
    settings = {} if aws.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": aws.region}}
    aws_call(lambda: s3.create_bucket(Bucket=bucket, **settings))
    aws_call(lambda: s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}))


def upload(aws: Aws, bucket: str, data: bytes, stem: str, suffix: str) -> str:
    """Put `data` under a key naming its content; returns the key."""
    key = f"{plan.STACK}/{stem}-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    aws_call(lambda: aws.client("s3").put_object(Bucket=bucket, Key=key, Body=data))
    return key


def remove_artifacts(aws: Aws, bucket: str, keep: tuple[str, ...] = ()) -> int:
    """Delete this stack's artifacts in `bucket` except `keep`; how many were deleted."""
    s3 = aws.client("s3")
    pages = aws_call(lambda: list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{plan.STACK}/")))
    keys = [item["Key"] for page in pages for item in page.get("Contents", []) if item["Key"] not in keep]
    for start in range(0, len(keys), 1000):
        aws_call(lambda: s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]}))
    return len(keys)


def template_url(aws: Aws, bucket: str, key: str) -> str:
    domain = "amazonaws.com.cn" if aws.region.startswith("cn-") else "amazonaws.com"
    return f"https://s3.{aws.region}.{domain}/{bucket}/{key}"  # path style: bucket names with dots work too


def zip_jobs_file(zip_path: Path) -> str:
    """The jobs file inside the zip; ConfigError unless it is the one the plan reads."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            shipped = zf.read("jobs.toml").decode("utf-8")
    except KeyError:
        raise ConfigError(f"{zip_path} carries no jobs.toml: create jobs.toml (cp jobs.example.toml jobs.toml)"
                          " or set JOBS_FILE, then run make deploy-aws again") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{zip_path}: not a readable zip: {exc}") from None
    source = config.jobs_source()
    local = os.environ.get("JOBS_TOML") or config.jobs_file_path().read_text(encoding="utf-8")
    if shipped != local:
        raise ConfigError(f"{zip_path} was built with another jobs file than {source}: on AWS the jobs file"
                          " travels in the zip, so run make deploy-aws (it builds first), without JOBS_TOML")
    return shipped


# --- the stack ------------------------------------------------------------------------------

def describe(cfn, stack: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return cfn.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def wait_stack(cfn, stack_id: str) -> dict:
    """The stack once CloudFormation is done with it (no *_IN_PROGRESS status)."""
    started = time.monotonic()
    while True:
        found = aws_call(lambda: cfn.describe_stacks(StackName=stack_id)["Stacks"][0])
        if not found["StackStatus"].endswith("_IN_PROGRESS") or found["StackStatus"] == "REVIEW_IN_PROGRESS":
            return found
        if time.monotonic() - started > WAIT_LIMIT:
            raise DeployFailed(f"stack {plan.STACK} is still {found['StackStatus']} after {WAIT_LIMIT // 60} minutes;"
                               " CloudFormation carries on: see its console")
        time.sleep(POLL_SECONDS)


def first_failure(events: list[dict]) -> str:
    """The root cause among a stack's events (newest first, as AWS lists them): the earliest
    failed resource of the latest operation, skipping the cancellations it caused."""
    latest = []
    for event in events:
        latest.append(event)
        if event.get("ResourceType") == "AWS::CloudFormation::Stack" and event.get("ResourceStatusReason") == "User Initiated":
            break
    for event in reversed(latest):
        reason = event.get("ResourceStatusReason") or ""
        if event.get("ResourceStatus", "").endswith("_FAILED") and "cancelled" not in reason.lower():
            what = event.get("LogicalResourceId", "?")
            if event.get("ResourceType") != "AWS::CloudFormation::Stack":
                what += f" ({event.get('ResourceType')})"
            return " ".join(f"{what}: {reason or 'no reason given'}".split())
    return "no failed resource reported: see the stack's events in the CloudFormation console"


def _failure(cfn, stack_id: str) -> str:
    events = aws_call(lambda: cfn.describe_stack_events(StackName=stack_id)["StackEvents"])
    return log.redact(first_failure(events))


def apply(cfn, url: str, parameters: dict) -> str:
    """Create or update the stack from the template at `url` through a change set; the final
    status, or "unchanged"."""
    stack = aws_call(lambda: describe(cfn, plan.STACK))
    if stack and stack["StackStatus"] == "ROLLBACK_COMPLETE":  # a failed first create cannot be updated
        aws_call(lambda: cfn.delete_stack(StackName=stack["StackId"]))
        wait_stack(cfn, stack["StackId"])
        stack = None
    if stack and stack["StackStatus"].endswith("_IN_PROGRESS") and stack["StackStatus"] != "REVIEW_IN_PROGRESS":
        raise DeployFailed(f"stack {plan.STACK} is busy ({stack['StackStatus']}): wait for it, then deploy again")
    kind = "UPDATE" if stack and stack["StackStatus"] != "REVIEW_IN_PROGRESS" else "CREATE"
    name = "deploy-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    created = aws_call(lambda: cfn.create_change_set(
        StackName=plan.STACK, ChangeSetName=name, ChangeSetType=kind, TemplateURL=url,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"], Description="make deploy-aws"))
    started = time.monotonic()
    while True:
        change_set = aws_call(lambda: cfn.describe_change_set(ChangeSetName=created["Id"]))
        if change_set["Status"] in ("CREATE_COMPLETE", "FAILED"):
            break
        if time.monotonic() - started > WAIT_LIMIT:
            raise DeployFailed(f"change set {name} still {change_set['Status']} after {WAIT_LIMIT // 60} minutes")
        time.sleep(POLL_SECONDS)
    if change_set["Status"] == "FAILED":
        reason = change_set.get("StatusReason", "")
        if any(text in reason for text in NO_CHANGES):
            aws_call(lambda: cfn.delete_change_set(ChangeSetName=created["Id"]))
            return "unchanged"
        raise DeployFailed(log.redact(" ".join(f"CloudFormation refused the change set: {reason}".split())))
    aws_call(lambda: cfn.execute_change_set(ChangeSetName=created["Id"]))
    final = wait_stack(cfn, created["StackId"])
    if final["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise DeployFailed(f"deploy failed, stack {plan.STACK} is {final['StackStatus']}: {_failure(cfn, created['StackId'])}")
    return final["StackStatus"]


def put_secrets(aws: Aws) -> list[str]:
    stored = []
    ssm = aws.client("ssm")
    for name in plan.SECRET_NAMES:
        if os.environ.get(name):
            aws_call(lambda: ssm.put_parameter(Name=f"{plan.SECRETS_PATH}{name}", Value=os.environ[name],
                                               Type="SecureString", Overwrite=True))
            stored.append(name)
    return stored


def deploy(zip_path: Path, secrets_from_env: bool = False, bucket: str | None = None) -> list[str]:
    """Deploy; the lines to print."""
    the_plan = plan.load()  # a wrong jobs file or budget stops here, before anything on AWS changes
    rendered = template.render(the_plan)  # and a template CloudFormation would refuse
    if not zip_path.exists():
        raise ConfigError(f"{zip_path} not found: run `make build` first (make deploy-aws does)")
    zip_jobs_file(zip_path)
    aws = connect()
    lines = []
    if secrets_from_env:
        stored = put_secrets(aws)
        lines.append(f"secrets stored in SSM under {plan.SECRETS_PATH}: {', '.join(stored) or 'none set'}")
    bucket = artifacts_bucket(aws, bucket)
    ensure_bucket(aws, bucket)
    code_key = upload(aws, bucket, zip_path.read_bytes(), "lambda", ".zip")
    template_key = upload(aws, bucket, json.dumps(rendered, indent=1).encode(), "template", ".json")
    cfn = aws.client("cloudformation")
    status = apply(cfn, template_url(aws, bucket, template_key),
                   {"CodeBucket": bucket, "CodeKey": code_key, "AlertEmail": os.environ.get("ALERT_EMAIL", "")})
    remove_artifacts(aws, bucket, keep=(code_key, template_key))  # older zips: no stack refers to them now
    lines.append(f"stack {plan.STACK} in {aws.region}: {status}")
    for f in the_plan.functions:
        reserved = the_plan.reserved.get(f.kind)
        lines.append(f"  function {f.name}" + (f" (at most {reserved} at once)" if reserved else ""))
    for s in the_plan.schedules:
        lines.append(f"  schedule {s.name}: {s.expression}, {len(s.jobs)} job{'s' * (len(s.jobs) != 1)}"
                     + (" (sharded on the work queue)" if s.function.kind == "dispatch" else ""))
    used = sum(the_plan.reserved.values()) * plan.CONNECTIONS_PER_RUN
    lines.append(f"  database connections at most {used} of DB_CONNECTIONS={the_plan.connections}")
    queue = aws_call(lambda: cfn.describe_stack_resource(StackName=plan.STACK, LogicalResourceId="DeadLetterQueue"))
    lines.append(f"  dead-letter queue {queue['StackResourceDetail']['PhysicalResourceId']}")  # a queue's ID is its URL
    return lines


def destroy(with_secrets: bool = False, bucket: str | None = None) -> list[str]:
    """Delete the stack (and this deploy's artifacts; the secrets too if asked); the lines to print."""
    aws = connect()
    cfn = aws.client("cloudformation")
    lines = []
    stack = aws_call(lambda: describe(cfn, plan.STACK))
    if stack is None:
        lines.append(f"no stack {plan.STACK} in {aws.region}: nothing to delete")
    else:
        aws_call(lambda: cfn.delete_stack(StackName=stack["StackId"]))
        final = wait_stack(cfn, stack["StackId"])
        if final["StackStatus"] != "DELETE_COMPLETE":
            raise DeployFailed(f"teardown failed, stack {plan.STACK} is {final['StackStatus']}:"
                               f" {_failure(cfn, stack['StackId'])}")
        lines.append(f"stack {plan.STACK} in {aws.region}: deleted")
    bucket = artifacts_bucket(aws, bucket)
    if bucket_exists(aws, bucket):
        removed = remove_artifacts(aws, bucket)
        lines.append(f"artifacts removed from s3://{bucket}/{plan.STACK}/: {removed}")
        s3 = aws.client("s3")
        if bucket == own_bucket(aws) and not aws_call(lambda: s3.list_objects_v2(Bucket=bucket).get("KeyCount")):
            aws_call(lambda: s3.delete_bucket(Bucket=bucket))  # ours, and empty now
            lines.append(f"bucket {bucket} deleted")
    ssm = aws.client("ssm")
    pages = aws_call(lambda: list(ssm.get_paginator("get_parameters_by_path").paginate(Path=plan.SECRETS_PATH)))
    names = [p["Name"] for page in pages for p in page["Parameters"]]
    if with_secrets and names:
        for start in range(0, len(names), 10):  # SSM deletes ten at a time
            aws_call(lambda: ssm.delete_parameters(Names=names[start:start + 10]))
        lines.append(f"secrets deleted from SSM: {', '.join(n.rsplit('/', 1)[-1] for n in names)}")
    elif names:
        lines.append(f"secrets kept in SSM under {plan.SECRETS_PATH} ({len(names)}): delete them with"
                     " make destroy-aws DESTROY_ARGS=--with-secrets")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description="Deploy to AWS or tear down.")
    parser.add_argument("action", nargs="?", choices=["deploy", "destroy"], default="deploy")
    parser.add_argument("--zip", type=Path, default=ROOT / "dist" / "lambda.zip", help="the code (deploy)")
    parser.add_argument("--secrets-from-env", action="store_true",
                        help=f"store {', '.join(plan.SECRET_NAMES)} from the environment in SSM (deploy)")
    parser.add_argument("--with-secrets", action="store_true", help="also delete the SSM secrets (destroy)")
    parser.add_argument("--bucket", help="artifacts bucket (default $ARTIFACTS_BUCKET, else one per account and region)")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.action == "deploy":
            lines = deploy(args.zip, args.secrets_from_env, args.bucket)
        else:
            lines = destroy(args.with_secrets, args.bucket)
        print("\n".join(log.redact(line) for line in lines))
        return 0

    return entry.run_command(body)


if __name__ == "__main__":
    sys.exit(main())
