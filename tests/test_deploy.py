"""Deploy targets: schedules and cron checks, the Heroku Scheduler entries, the plan's grouped
schedules and connection budget, the CloudFormation template (cfn-lint and its content), and
`make deploy-aws` / `make destroy-aws` against moto's CloudFormation in server mode (AWS is
the one thing that cannot run here). moto skips AWS::Scheduler::* resources (it has no
CloudFormation support for them) and never fails or rolls back a stack: the template tests
cover the schedules, and first_failure is tested on the events CloudFormation lists."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
from cfnlint.api import lint_all

from devtools import heroku_schedule
from infra import deploy, plan, template
from shared.app import config
from shared.core import schedule
from shared.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
# moto says, rightly, that it skips the Scheduler resources (tested through the template instead).
pytestmark = [pytest.mark.filterwarnings("ignore:Tried to parse AWS.{2}Scheduler"),
              pytest.mark.filterwarnings("ignore:Unable to delete Schedule")]

JOBS = """
[[scrape]]
name = "agenda"
url = "https://example.org/agenda"

[[scrape]]
name = "minutes"
url = "https://example.org/minutes"

[[scrape]]
name = "prices"
url = "https://example.org/prices"
every = "1h"
at = ":20"

[[refresh]]
name = "bikeways"
username = "${CARTO_USERNAME}"
api_key = "${CARTO_API_KEY}"
every = "1d"
at = "04:30"
"""


@pytest.fixture
def jobs_file(tmp_path, monkeypatch):
    path = tmp_path / "jobs.toml"
    path.write_text(JOBS)
    monkeypatch.setenv("JOBS_FILE", str(path))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    monkeypatch.delenv("DB_CONNECTIONS", raising=False)
    return path


def lint_errors(rendered: dict) -> list:
    """cfn-lint's errors and warnings (its informational notes are left out)."""
    return [m for m in lint_all(json.dumps(rendered)) if m.rule.id[0] in "EW"]


# --- schedules ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "keys, aws, heroku",
    [
        ({}, "rate(10 minutes)", "Every 10 minutes"),
        ({"every": "1h"}, "cron(0 * * * ? *)", "Every hour at :00"),
        ({"every": "1h", "at": ":40"}, "cron(40 * * * ? *)", "Every hour at :40"),
        ({"every": "1d", "at": "04:30"}, "cron(30 4 * * ? *)", "Every day at 04:30 (UTC)"),
        ({"every": "1d"}, "cron(0 0 * * ? *)", "Every day at 00:00 (UTC)"),
    ],
)
def test_schedules_for_both_platforms(keys, aws, heroku):
    s = schedule.parse(keys.get("every"), keys.get("at"), None, "10m")
    assert (s.aws_expression(), s.heroku_frequency()) == (aws, heroku)


def test_cron_is_aws_only():
    s = schedule.parse(None, None, "0 4 ? * MON-FRI *", "10m")
    assert s.aws_expression() == "cron(0 4 ? * MON-FRI *)"
    with pytest.raises(schedule.ScheduleError, match="Heroku Scheduler cannot run cron"):
        s.heroku_frequency()


@pytest.mark.parametrize("cron", [
    "0 4 ? * MON-FRI *", "0/15 * * * ? *", "*/5 8-17 ? * 2-6 *", "0 4 L * ? *", "0 4 15W * ? *",
    "0 10 ? * 6L *", "0 10 ? * 3#2 *", "0 4 ? jan-mar mon 2026", "0,30 4 1,15 * ? 2026-2030/2",
    "0 18 ? * SUN,SAT *", "0 4 LW DEC ? *",
])
def test_valid_eventbridge_cron_expressions_pass(cron):
    assert schedule.parse(None, None, cron, "10m").aws_expression() == f"cron({cron})"


@pytest.mark.parametrize(
    "cron, message",
    [
        ("99 4 ? * FOO *", "minutes '99': 99 is not in 0-59"),
        ("0 4 ? * FOO *", "day-of-week 'FOO': 'FOO' is not 1-7 or SUN-SAT"),
        ("0 24 1 * ? *", "hours '24': 24 is not in 0-23"),
        ("0 4 0 * ? *", "day-of-month '0': 0 is not in 1-31"),
        ("0 4 ? 13 MON *", "month '13': 13 is not in 1-12"),
        ("0 4 ? FOO MON *", "month 'FOO': 'FOO' is not 1-12 or JAN-DEC"),
        ("0 4 ? * 8 *", "day-of-week '8': 8 is not in 1-7"),
        ("0 4 ? * MON 1969", "year '1969': 1969 is not in 1970-2199"),
        ("0 4 ? * 3#6 *", "'#6' must be #1 to #5"),
        ("0/0 4 ? * MON *", "increment '/0' must be a whole number of at least 1"),
        ("0 4 ,1 * ? *", "day-of-month ',1': empty item in a list"),
        ("? 4 1 * ? *", "'?' is only allowed in day-of-month or day-of-week"),
        ("0 4 ?,1 * MON *", "'?' must stand alone"),
        ("0 4 * * MON *", "needs '?' in exactly one of day-of-month and day-of-week"),
        ("0 4 ? * ? *", "needs '?' in exactly one of day-of-month and day-of-week"),
        ("0 4 * *", "is not an EventBridge cron expression (6 fields"),
    ],
)
def test_cron_expressions_are_checked_field_by_field(cron, message):
    with pytest.raises(schedule.ScheduleError) as info:
        schedule.parse(None, None, cron, "10m")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        ('every = "5m"', "job 'a': key 'every' must be one of '10m', '1h', '1d', not '5m'"),
        ('every = "1d"\nat = "25:00"', "job 'a': key 'at' must be HH:MM (UTC) for a daily job"),
        ('every = "1h"\nat = "04:30"', "job 'a': key 'at' must be :MM for an hourly job"),
        ('at = "04:30"', "job 'a': key 'at' only applies to hourly and daily jobs"),
        ('cron = "0 4 * * *"', "job 'a': key 'cron': '0 4 * * *' is not an EventBridge cron expression"),
        ('cron = "99 4 ? * FOO *"', "job 'a': key 'cron': '99 4 ? * FOO *': minutes '99': 99 is not in 0-59"),
        ('cron = "0 4 * * MON *"', "needs '?' in exactly one of day-of-month and day-of-week"),
        ('cron = "0 4 ? * * *"\nevery = "1d"', "key 'cron' replaces 'every' and 'at'"),
        ('evry = "1d"', "job 'a': unknown key 'evry'"),
    ],
)
def test_invalid_schedules_name_the_job_and_key(extra, message, monkeypatch):
    table = f'[[scrape]]\nname = "a"\nurl = "http://x/"\n{extra}\n'
    monkeypatch.setenv("JOBS_TOML", table)
    with pytest.raises(config.ConfigError) as info:
        [config.build(entry) for entry in config.entries()]
    assert message in str(info.value)
    if "unknown key" not in message:  # deploy tools read schedules without the rest of the job
        with pytest.raises(config.ConfigError) as info:
            config.schedules()
        assert message in str(info.value)


def test_heroku_schedule_prints_what_to_paste(jobs_file, capsys):
    assert heroku_schedule.main() == 0
    out = capsys.readouterr().out
    assert "  Every 10 minutes             python -m functions.scrape --every 10m\n" in out
    assert "  Every hour at :20            python -m functions.scrape --every 1h --at :20\n" in out
    assert "  Every day at 04:30 (UTC)     python -m functions.carto_refresh --every 1d --at 04:30\n" in out
    assert "--job" not in out  # entries select by schedule: no job names on any of them


def test_heroku_schedule_rejects_cron_naming_the_job(tmp_path, monkeypatch, capsys):
    path = tmp_path / "jobs.toml"
    path.write_text('[[scrape]]\nname = "weekdays"\nurl = "http://x/"\ncron = "0 4 ? * MON-FRI *"\n')
    monkeypatch.setenv("JOBS_FILE", str(path))
    assert heroku_schedule.main() == 2
    err = capsys.readouterr().err
    assert f"{path}: [[scrape]] job 'weekdays': Heroku Scheduler cannot run cron expressions" in err


# --- the plan: grouped schedules and the connection budget -----------------------------------

def test_one_schedule_per_kind_and_expression_naming_its_jobs(jobs_file):
    p = plan.load()
    assert [(s.function.kind, s.expression, s.jobs) for s in p.schedules] == [
        ("scrape", "rate(10 minutes)", ("agenda", "minutes")),
        ("scrape", "cron(20 * * * ? *)", ("prices",)),
        ("refresh", "cron(30 4 * * ? *)", ("bikeways",)),
    ]
    assert json.loads(p.schedules[0].input) == {"jobs": ["agenda", "minutes"],
                                                "scheduled_time": "<aws.scheduler.scheduled-time>"}
    # One connection per schedule that may fire at once, within DB_CONNECTIONS (default 10).
    assert (p.reserved, p.queue_concurrency, p.connections) == ({"scrape": 2, "refresh": 1}, 0, 10)
    assert "dispatch" not in {f.kind for f in p.functions}


def test_schedule_names_are_distinct_short_and_stable():
    expressions = ["cron(0 4 * * ? *)", "cron(0 4 ? * * *)", "cron(" + " ".join(["0,1,2,3,4,5,6,7,8,9"] * 2) + " * * ? *)"]
    names = [plan.schedule_name("scrape", e) for e in expressions]
    assert len(set(names)) == 3 and all(len(n) <= 64 for n in names)
    assert names[0] == plan.schedule_name("scrape", "cron(0 4 * * ? *)")


def many_scrape_jobs(count: int, every: str = "10m") -> str:
    return "".join(f'[[scrape]]\nname = "p{i}"\nurl = "http://x/{i}"\nevery = "{every}"\n' for i in range(count))


def test_a_large_schedule_goes_through_the_dispatcher_and_the_queue_gets_the_rest(monkeypatch):
    monkeypatch.setenv("JOBS_TOML", many_scrape_jobs(plan.DISPATCH_THRESHOLD + 1)
                       + '[[scrape]]\nname = "hourly"\nurl = "http://x/h"\nevery = "1h"\n')
    monkeypatch.setenv("DB_CONNECTIONS", "10")
    p = plan.load()
    assert [(s.function.kind, json.loads(s.input)) for s in p.schedules] == [
        ("dispatch", {"schedule": "rate(10 minutes)", "kind": "scrape",
                      "scheduled_time": "<aws.scheduler.scheduled-time>"}),
        ("scrape", {"jobs": ["hourly"], "scheduled_time": "<aws.scheduler.scheduled-time>"}),
    ]
    # scrape: 1 (the hourly schedule) + 5 shards at once; refresh: 1 (no schedule: runs by hand)
    assert (p.queue_concurrency, p.reserved) == (plan.SHARDS_AT_ONCE, {"scrape": 6, "refresh": 1})
    monkeypatch.setenv("DB_CONNECTIONS", "4")  # the queue gets what is left: 4 - 1 - 1
    assert (plan.load().queue_concurrency, plan.load().reserved) == (2, {"scrape": 3, "refresh": 1})
    rendered = template.render(plan.load())
    assert lint_errors(rendered) == []
    mapping = rendered["Resources"]["WorkQueueMapping"]["Properties"]
    assert mapping["BatchSize"] == 1 and mapping["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert rendered["Resources"]["ScrapeFunction"]["Properties"]["ReservedConcurrentExecutions"] == 3
    assert "ReservedConcurrentExecutions" not in rendered["Resources"]["DispatchFunction"]["Properties"]


@pytest.mark.parametrize(
    "jobs, connections, message, fits",
    [
        # 11 scrape schedules (hourly at :00 ... :50 and every 10 minutes) and the refresh function
        ("".join(f'[[scrape]]\nname = "h{m}"\nurl = "http://x/"\nevery = "1h"\nat = ":{m:02d}"\n' for m in range(0, 60, 6))
         + '[[scrape]]\nname = "often"\nurl = "http://x/"\n', "10",
         "its schedules need 12 database connections at once (scrape: 11 (1 per schedule), refresh: 1 (no schedule"
         " of its own: 1 for runs by hand)), more than DB_CONNECTIONS=10", "12"),
        (many_scrape_jobs(plan.DISPATCH_THRESHOLD + 1), "3",
         "need 4 database connections at once (scrape: 1 (no schedule of its own: 1 for runs by hand), refresh: 1"
         " (no schedule of its own: 1 for runs by hand), the shard queue: 2 (the least SQS allows)), more than"
         " DB_CONNECTIONS=3", "4"),
    ],
)
def test_the_plan_refuses_schedules_that_cannot_fit_the_budget(jobs, connections, message, fits, monkeypatch):
    monkeypatch.setenv("JOBS_TOML", jobs)
    monkeypatch.setenv("DB_CONNECTIONS", connections)
    with pytest.raises(ConfigError) as info:
        plan.load()
    assert str(info.value).startswith("$JOBS_TOML: ") and message in str(info.value)
    monkeypatch.setenv("DB_CONNECTIONS", fits)  # exactly what they need fits
    assert sum(plan.load().reserved.values()) == int(fits)


@pytest.mark.parametrize("value", ["0", "ten", "-3", ""])
def test_db_connections_must_be_a_positive_whole_number(value, jobs_file, monkeypatch):
    monkeypatch.setenv("DB_CONNECTIONS", value)
    with pytest.raises(ConfigError, match="DB_CONNECTIONS=.* must be a whole number of database connections"):
        plan.load()


# --- the template ---------------------------------------------------------------------------

def test_template_lints_clean_and_says_everything_once(jobs_file):
    p = plan.load()
    rendered = template.render(p)
    assert lint_errors(rendered) == []
    resources = rendered["Resources"]
    schedules = {r["Properties"]["Name"]: r["Properties"] for r in resources.values()
                 if r["Type"] == "AWS::Scheduler::Schedule"}
    assert sorted(schedules) == sorted(s.name for s in p.schedules) and len(schedules) == 3
    often = schedules[p.schedules[0].name]
    assert often["ScheduleExpression"] == "rate(10 minutes)" and often["ScheduleExpressionTimezone"] == "UTC"
    assert json.loads(often["Target"]["Input"])["jobs"] == ["agenda", "minutes"]
    assert often["Target"]["Arn"] == {"Fn::GetAtt": ["ScrapeFunction", "Arn"]}
    assert often["Target"]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 600, "MaximumRetryAttempts": 3}
    assert often["Target"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}

    functions = {r["Properties"]["FunctionName"]: r["Properties"] for r in resources.values()
                 if r["Type"] == "AWS::Lambda::Function"}
    assert sorted(functions) == [f"{plan.STACK}-carto_refresh", f"{plan.STACK}-scrape"]  # no dispatcher needed
    scrape = functions[f"{plan.STACK}-scrape"]
    assert (scrape["Handler"], scrape["Timeout"], scrape["MemorySize"]) == ("functions.scrape.handler", 540, 512)
    assert scrape["ReservedConcurrentExecutions"] == 2 and functions[f"{plan.STACK}-carto_refresh"]["ReservedConcurrentExecutions"] == 1
    for f in functions.values():  # secrets come from SSM, never plain variables
        assert f["Environment"]["Variables"] == {"JOBS_FILE": "jobs.toml", "SECRETS_SSM_PATH": plan.SECRETS_PATH}
        assert f["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    retention = {r["Properties"]["LogGroupName"]: r["Properties"]["RetentionInDays"] for r in resources.values()
                 if r["Type"] == "AWS::Logs::LogGroup"}
    assert retention == {f"/aws/lambda/{name}": 30 for name in functions}
    assert "WorkQueue" not in resources and "WorkQueueMapping" not in resources


def actions(role: dict) -> dict:
    """action -> resources, over a role's inline policies."""
    found = {}
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            for action in statement["Action"]:
                found.setdefault(action, []).append(statement["Resource"])
    return found


def test_each_role_may_do_only_what_its_function_needs(monkeypatch):
    monkeypatch.setenv("JOBS_TOML", many_scrape_jobs(plan.DISPATCH_THRESHOLD + 1)
                       + '[[refresh]]\nname = "r"\nusername = "u"\napi_key = "k"\n')
    rendered = template.render(plan.load())
    resources = rendered["Resources"]
    assert lint_errors(rendered) == []
    logs = {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert set(actions(resources["ScrapeRole"])) == logs | {"sqs:SendMessage", "ssm:GetParametersByPath",
                                                           "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    assert set(actions(resources["RefreshRole"])) == logs | {"sqs:SendMessage", "ssm:GetParametersByPath"}
    assert set(actions(resources["DispatchRole"])) == logs | {"sqs:SendMessage"}  # no secrets
    assert actions(resources["ScrapeRole"])["logs:PutLogEvents"] == [{"Fn::Sub": "${ScrapeLogGroup.Arn}"}]
    scheduler = actions(resources["SchedulerRole"])
    assert set(scheduler) == {"lambda:InvokeFunction", "sqs:SendMessage"}
    assert scheduler["lambda:InvokeFunction"] == [[{"Fn::GetAtt": ["DispatchFunction", "Arn"]},
                                                   {"Fn::GetAtt": ["RefreshFunction", "Arn"]}]]
    trust = resources["SchedulerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_template_with_a_broken_reference_fails_lint(jobs_file):
    """The lint check above can fail: a dangling reference is an error."""
    rendered = template.render(plan.load())
    rendered["Resources"]["ScrapeFunction"]["Properties"]["Role"] = {"Fn::GetAtt": ["NoSuchRole", "Arn"]}
    assert lint_errors(rendered)


def test_make_template_without_a_jobs_file_says_so_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("JOBS_FILE", "JOBS_TOML")}
    done = subprocess.run([sys.executable, "-m", "infra.template"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: jobs.toml: jobs file not found (set JOBS_FILE or create jobs.toml)\n"


# --- deploy and teardown on moto's CloudFormation --------------------------------------------

def lambda_zip(tmp_path, jobs_text: str, name: str = "lambda.zip") -> Path:
    """A zip as `make build` makes it, as far as deploying is concerned: code and the jobs file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("functions/scrape.py", "def handler(event, context):\n    return event\n")
        zf.writestr("jobs.toml", jobs_text)
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    return path


def run(argv, capsys) -> tuple[int, str, str]:
    code = deploy.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def aws(moto_server, monkeypatch):
    """moto in server mode, emptied before and after: its state lives in this process, across
    servers. Deploys look at CloudFormation without pausing."""
    import urllib.request

    def reset():
        urllib.request.urlopen(urllib.request.Request(f"{moto_server['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST"))

    monkeypatch.setattr(deploy, "POLL_SECONDS", 0)
    for name in plan.SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    reset()
    yield moto_server
    reset()


def test_deploy_creates_then_updates_the_stack_through_change_sets(aws, jobs_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CARTO_API_KEY", "k3y-v4lue-123")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw-secret@db.example.com/d?sslmode=require")
    monkeypatch.setenv("ALERT_EMAIL", "oncall@example.org")
    zip_path = lambda_zip(tmp_path, JOBS)
    code, out, err = run(["deploy", "--zip", str(zip_path), "--secrets-from-env"], capsys)
    assert code == 0, err
    assert f"stack {plan.STACK} in eu-west-1: CREATE_COMPLETE" in out
    assert "database connections at most 3 of DB_CONNECTIONS=10" in out
    assert "k3y-v4lue" not in out + err and "pw-secret" not in out + err

    cfn, lam, logs, ssm = (boto3.client(n) for n in ("cloudformation", "lambda", "logs", "ssm"))
    stack = cfn.describe_stacks(StackName=plan.STACK)["Stacks"][0]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["CodeKey"].startswith(f"{plan.STACK}/lambda-") and params["CodeKey"].endswith(".zip")
    assert params["AlertEmail"] == "oncall@example.org"  # the alarms' topic mails it
    fn = lam.get_function(FunctionName=plan.FUNCTIONS["scrape"].name)
    assert (fn["Configuration"]["Runtime"], fn["Configuration"]["Handler"], fn["Configuration"]["Timeout"]) == (
        plan.RUNTIME, "functions.scrape.handler", 540)
    assert fn["Concurrency"] == {"ReservedConcurrentExecutions": 2}
    assert fn["Configuration"]["Environment"]["Variables"] == {"JOBS_FILE": "jobs.toml", "SECRETS_SSM_PATH": plan.SECRETS_PATH}
    assert fn["Configuration"]["Role"].split("/")[-1].startswith(f"{plan.STACK}-ScrapeRole-")  # created by the stack
    groups = {g["logGroupName"]: g.get("retentionInDays") for g in logs.describe_log_groups()["logGroups"]}
    assert groups == {f"/aws/lambda/{plan.STACK}-scrape": 30, f"/aws/lambda/{plan.STACK}-carto_refresh": 30}
    assert f"/{plan.STACK}-dead-letters\n" in out and "  dead-letter queue " in out
    param = ssm.get_parameter(Name=f"{plan.SECRETS_PATH}CARTO_API_KEY", WithDecryption=True)["Parameter"]
    assert (param["Type"], param["Value"]) == ("SecureString", "k3y-v4lue-123")

    # The same zip and jobs: CloudFormation finds nothing to change.
    code, out, err = run(["deploy", "--zip", str(zip_path)], capsys)
    assert code == 0 and f"stack {plan.STACK} in eu-west-1: unchanged" in out, err

    # Many more jobs on one schedule: an update adds the dispatcher, the queue and its mapping.
    jobs_file.write_text(JOBS + many_scrape_jobs(plan.DISPATCH_THRESHOLD))
    code, out, err = run(["deploy", "--zip", str(lambda_zip(tmp_path, jobs_file.read_text(), "new.zip"))], capsys)
    assert code == 0 and f"stack {plan.STACK} in eu-west-1: UPDATE_COMPLETE" in out, err
    # scrape: 1 (the hourly schedule) + 5 shards; refresh: 1
    assert "(sharded on the work queue)" in out and "database connections at most 7 of DB_CONNECTIONS=10" in out
    assert len(lam.list_functions()["Functions"]) == 3
    mappings = lam.list_event_source_mappings(FunctionName=plan.FUNCTIONS["scrape"].name)["EventSourceMappings"]
    assert len(mappings) == 1 and mappings[0]["EventSourceArn"].endswith(plan.WORK_QUEUE)
    assert mappings[0]["ScalingConfig"] == {"MaximumConcurrency": plan.SHARDS_AT_ONCE}
    # (moto leaves reserved concurrency as created on a stack update: read it from the deployed template)
    body = boto3.client("cloudformation").get_template(StackName=plan.STACK)["TemplateBody"]
    deployed = body if isinstance(body, dict) else json.loads(body)
    assert deployed["Resources"]["ScrapeFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1 + plan.SHARDS_AT_ONCE
    # Only what the stack now uses stays in the artifacts bucket.
    bucket = params["CodeBucket"]
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 2 and params["CodeKey"] not in keys


def test_destroy_deletes_the_stack_and_keeps_the_secrets_unless_asked(aws, jobs_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NOTIFY_URLS", "json://hooks.example.org/x")
    assert run(["deploy", "--zip", str(lambda_zip(tmp_path, JOBS)), "--secrets-from-env"], capsys)[0] == 0
    lam, s3, ssm = boto3.client("lambda"), boto3.client("s3"), boto3.client("ssm")
    assert len(lam.list_functions()["Functions"]) == 2 and len(s3.list_buckets()["Buckets"]) == 1

    code, out, err = run(["destroy"], capsys)
    assert code == 0, err
    assert f"stack {plan.STACK} in eu-west-1: deleted" in out
    assert "secrets kept in SSM" in out and "DESTROY_ARGS=--with-secrets" in out
    assert lam.list_functions()["Functions"] == [] and s3.list_buckets()["Buckets"] == []
    assert boto3.client("logs").describe_log_groups()["logGroups"] == []
    with pytest.raises(boto3.client("cloudformation").exceptions.ClientError, match="does not exist"):
        boto3.client("cloudformation").describe_stacks(StackName=plan.STACK)
    assert ssm.get_parameter(Name=f"{plan.SECRETS_PATH}NOTIFY_URLS")["Parameter"]["Type"] == "SecureString"

    code, out, err = run(["destroy", "--with-secrets"], capsys)
    assert code == 0 and f"no stack {plan.STACK} in eu-west-1: nothing to delete" in out, err
    assert "secrets deleted from SSM: NOTIFY_URLS" in out
    assert ssm.get_parameters_by_path(Path=plan.SECRETS_PATH)["Parameters"] == []


def test_a_zip_built_from_another_jobs_file_is_refused(aws, jobs_file, tmp_path, capsys):
    code, out, err = run(["deploy", "--zip", str(lambda_zip(tmp_path, JOBS.replace("agenda", "other")))], capsys)
    assert code == 2 and out == ""
    assert err == (f"error: {tmp_path / 'lambda.zip'} was built with another jobs file than {jobs_file}: on AWS the"
                   " jobs file travels in the zip, so run make deploy-aws (it builds first), without JOBS_TOML\n")
    assert boto3.client("s3").list_buckets()["Buckets"] == []  # nothing happened on AWS


def test_deploy_without_a_zip_says_so(jobs_file, tmp_path, capsys):
    code, _, err = run(["deploy", "--zip", str(tmp_path / "none.zip")], capsys)
    assert code == 2 and err == f"error: {tmp_path / 'none.zip'} not found: run `make build` first (make deploy-aws does)\n"


# --- standard AWS configuration --------------------------------------------------------------

@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_either_region_variable_chooses_the_region(variable, aws, jobs_file, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv(variable, "ap-southeast-2")
    code, out, err = run(["deploy", "--zip", str(lambda_zip(tmp_path, JOBS))], capsys)
    assert code == 0 and f"stack {plan.STACK} in ap-southeast-2: CREATE_COMPLETE" in out, err
    stacks = boto3.client("cloudformation", region_name="ap-southeast-2").describe_stacks(StackName=plan.STACK)
    assert stacks["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_a_profile_gives_region_and_credentials(aws, tmp_path, monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    (tmp_path / "config").write_text("[profile deployer]\nregion = ca-central-1\n")
    (tmp_path / "credentials").write_text("[deployer]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = s3cr3t\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "deployer")
    aws = deploy.connect()
    assert (aws.region, aws.account) == ("ca-central-1", "123456789012")
    monkeypatch.setenv("AWS_REGION", "eu-north-1")  # the variable wins over the profile, as in the AWS CLI
    assert deploy.connect().region == "eu-north-1"


@pytest.fixture
def bare_aws_environment(tmp_path):
    """An environment with no AWS configuration at all (and no instance metadata lookups)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    (tmp_path / "empty").write_text("")
    return {**env, "AWS_CONFIG_FILE": str(tmp_path / "empty"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "empty"),
            "AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize(
    "extra, message",
    [
        ({}, "error: no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or a region in your AWS_PROFILE\n"),
        ({"AWS_REGION": "eu-west-1"}, "error: no AWS credentials: set AWS_PROFILE (see `aws configure`), or"
                                      " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n"),
        ({"AWS_PROFILE": "nobody"}, "error: AWS: The config profile (nobody) could not be found: check AWS_PROFILE"
                                    " (`aws configure list-profiles`)\n"),
    ],
)
def test_missing_aws_configuration_is_one_line_and_exit_2(extra, message, bare_aws_environment):
    done = subprocess.run([sys.executable, "-m", "infra.deploy", "destroy"], cwd=ROOT,
                          env={**bare_aws_environment, **extra}, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message)


# --- CloudFormation's failure reason ---------------------------------------------------------

def test_the_failure_reason_is_the_first_failed_resource_of_the_latest_operation():
    # As describe_stack_events lists them, newest first: a failed update rolled back.
    events = [
        {"LogicalResourceId": "scheduled-jobs", "ResourceType": "AWS::CloudFormation::Stack",
         "ResourceStatus": "UPDATE_ROLLBACK_COMPLETE"},
        {"LogicalResourceId": "ScrapeFunction", "ResourceType": "AWS::Lambda::Function", "ResourceStatus": "UPDATE_FAILED",
         "ResourceStatusReason": "Resource update cancelled"},
        {"LogicalResourceId": "RefreshFunction", "ResourceType": "AWS::Lambda::Function",
         "ResourceStatus": "UPDATE_FAILED", "ResourceStatusReason": "Resource handler returned message: \"Specified"
         " ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its"
         " minimum value of [100].\n(Service: Lambda, Status Code: 400)\""},
        {"LogicalResourceId": "scheduled-jobs", "ResourceType": "AWS::CloudFormation::Stack",
         "ResourceStatus": "UPDATE_IN_PROGRESS", "ResourceStatusReason": "User Initiated"},
        {"LogicalResourceId": "OldFunction", "ResourceType": "AWS::Lambda::Function", "ResourceStatus": "CREATE_FAILED",
         "ResourceStatusReason": "an older operation's failure"},
    ]
    assert deploy.first_failure(events) == (
        "RefreshFunction (AWS::Lambda::Function): Resource handler returned message: \"Specified"
        " ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its"
        " minimum value of [100]. (Service: Lambda, Status Code: 400)\"")
    assert "console" in deploy.first_failure(events[:1])


# --- what CloudFormation would refuse, refused first in one line ---------------------------------

@pytest.mark.parametrize("stack, says", [
    ("my_jobs", "STACK_NAME='my_jobs' must be 1 to 50 letters, digits and hyphens, starting with a letter"),
    ("9lives", "STACK_NAME='9lives' must be"),
    ("x" * 51, "STACK_NAME='" + "x" * 51 + "' must be"),
    ("jobs\u00e9", "STACK_NAME='jobs\u00e9' must be"),
])
def test_a_stack_name_aws_would_refuse_is_one_line_before_anything(jobs_file, monkeypatch, stack, says):
    monkeypatch.setattr(plan, "STACK", stack)
    with pytest.raises(ConfigError) as refused:
        plan.load()
    assert str(refused.value).startswith(says) and "\n" not in str(refused.value)


@pytest.mark.parametrize("variable, value", [("DB_CONNECTIONS", "\u00b9\u2070"), ("DB_CONNECTIONS", "\u0661\u0660"),
                                             ("DB_CONNECTIONS", " 10"), ("DISPATCH_THRESHOLD", "1e3"),
                                             ("DISPATCH_THRESHOLD", "+5")])
def test_numeric_settings_are_plain_ascii_digits(jobs_file, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"^{variable}='.*' must be a whole number"):
        plan.load()


def test_an_architecture_lambda_does_not_have_is_refused(jobs_file, monkeypatch):
    monkeypatch.setattr(plan, "ARCHITECTURE", "arm")
    with pytest.raises(ConfigError, match="^LAMBDA_ARCH='arm' must be x86_64 or arm64$"):
        plan.load()


def test_more_resources_than_a_stack_holds_is_refused_saying_how_to_fit(monkeypatch):
    times = [f"{h:02d}:{m:02d}" for h in range(24) for m in range(0, 60, 2)][:520]
    monkeypatch.setenv("JOBS_TOML", "".join(f'[[refresh]]\nname = "r{i}"\nsql = "SELECT 1"\nat = "{at}"\n'
                                            for i, at in enumerate(times)))
    monkeypatch.setenv("DB_CONNECTIONS", "5000")
    with pytest.raises(ConfigError) as refused:
        template.render(plan.load())
    message = str(refused.value)
    assert message.startswith("the template needs ") and "more than CloudFormation's 500 per stack" in message
    assert "give more jobs the same schedule" in message and "\n" not in message


def test_a_physical_name_past_aws_limits_is_refused(jobs_file, monkeypatch):
    p = plan.load()
    monkeypatch.setattr(plan, "STACK", "s" * 60)  # past the settings' check, as a plan made by hand could be
    long = plan.FunctionSpec("scrape", "s" * 60 + "-scrape", "functions.scrape.handler", 60, 512)
    with pytest.raises(ConfigError, match=r"AWS::Lambda::Function \w+: FunctionName 's+-scrape' is not a name AWS"
                                          r" accepts \(at most 64"):
        template.render(plan.Plan(p.schedules, (long,) + p.functions[1:], p.reserved, p.queue_concurrency,
                                  p.connections))


# --- alarms that reach a person ------------------------------------------------------------------

def test_the_template_alarms_on_errors_dead_letters_and_missed_schedules_to_one_topic(jobs_file):
    rendered = template.render(plan.load())
    assert lint_errors(rendered) == []
    resources = rendered["Resources"]
    alarms = {key: r["Properties"] for key, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert all(a["AlarmActions"] == [{"Ref": "AlertTopic"}] for a in alarms.values())
    assert resources["AlertTopic"]["Properties"]["TopicName"] == f"{plan.STACK}-alerts"
    errors = [a for a in alarms.values() if a["MetricName"] == "Errors"]
    assert sorted(a["Dimensions"][0]["Value"]["Ref"] for a in errors) == ["RefreshFunction", "ScrapeFunction"]
    (dead,) = [a for a in alarms.values() if a["Namespace"] == "AWS/SQS"]
    assert dead["MetricName"] == "ApproximateNumberOfMessagesVisible" and dead["Threshold"] == 0
    missed = {a["Dimensions"][0]["Value"]: a for a in alarms.values() if a["Namespace"] == "AWS/Scheduler"}
    schedules = {s.group: s for s in plan.load().schedules}
    assert set(missed) == set(schedules)  # one per schedule, on its own group's invocations
    for group, alarm in missed.items():
        assert alarm["TreatMissingData"] == "breaching" and alarm["ComparisonOperator"] == "LessThanThreshold"
        assert alarm["Period"] * alarm["EvaluationPeriods"] == 2 * schedules[group].interval  # twice its interval
    groups = {r["Properties"]["Name"] for r in resources.values() if r["Type"] == "AWS::Scheduler::ScheduleGroup"}
    assert groups == set(schedules)
    subscription = resources["AlertEmailSubscription"]
    assert subscription["Condition"] == "HasAlertEmail" and subscription["Properties"]["Protocol"] == "email"


def test_a_cron_schedule_gets_no_missed_runs_alarm(monkeypatch):
    monkeypatch.setenv("JOBS_TOML", '[[scrape]]\nname = "w"\nurl = "http://x/"\ncron = "0 4 ? * MON-FRI *"\n')
    resources = template.render(plan.load())["Resources"]
    assert not [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
                and r["Properties"]["Namespace"] == "AWS/Scheduler"]
