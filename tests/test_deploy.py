"""Deploy targets: schedules, the Heroku Scheduler entries, the CloudFormation template (cfn-lint),
and `make deploy-aws` against moto in server mode (AWS is the one thing that cannot run here)."""

import io
import json
import tomllib
import zipfile

import boto3
import pytest
from cfnlint.api import ManualArgs, lint_all

from devtools import heroku_schedule
from infra import deploy, plan, template
from shared import config
from shared.platform import schedule

JOBS = """
[[scrape]]
name = "agenda"
url = "https://example.org/agenda"

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
    return path


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
    s = schedule.parse(keys.get("every"), keys.get("at"), None, "scrape")
    assert (s.aws_expression(), s.heroku_frequency()) == (aws, heroku)


def test_cron_is_aws_only():
    s = schedule.parse(None, None, "0 4 ? * MON-FRI *", "scrape")
    assert s.aws_expression() == "cron(0 4 ? * MON-FRI *)"
    with pytest.raises(schedule.ScheduleError, match="Heroku Scheduler cannot run cron"):
        s.heroku_frequency()


@pytest.mark.parametrize(
    "extra, message",
    [
        ('every = "5m"', "job 'a': key 'every' must be one of '10m', '1h', '1d', not '5m'"),
        ('every = "1d"\nat = "25:00"', "job 'a': key 'at' must be HH:MM (UTC) for a daily job"),
        ('every = "1h"\nat = "04:30"', "job 'a': key 'at' must be :MM for an hourly job"),
        ('at = "04:30"', "job 'a': key 'at' only applies to hourly and daily jobs"),
        ('cron = "0 4 * * *"', "job 'a': key 'cron': '0 4 * * *' is not an EventBridge cron expression"),
        ('cron = "0 4 * * MON *"', "needs '?' in day-of-month or day-of-week"),
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
    assert "  Every 10 minutes             python -m functions.scrape --job agenda\n" in out
    assert "  Every hour at :20            python -m functions.scrape --job prices\n" in out
    assert "  Every day at 04:30 (UTC)     python -m functions.carto_refresh\n" in out


def test_heroku_schedule_rejects_cron_naming_the_job(tmp_path, monkeypatch, capsys):
    path = tmp_path / "jobs.toml"
    path.write_text('[[scrape]]\nname = "weekdays"\nurl = "http://x/"\ncron = "0 4 ? * MON-FRI *"\n')
    monkeypatch.setenv("JOBS_FILE", str(path))
    assert heroku_schedule.main() == 2
    err = capsys.readouterr().err
    assert f"{path}: [[scrape]] job 'weekdays': Heroku Scheduler cannot run cron expressions" in err


def test_template_lints_clean_and_has_one_schedule_per_job(jobs_file, tmp_path):
    rendered = template.render(plan.load())
    errors = [m for m in lint_all(json.dumps(rendered)) if m.rule.id.startswith("E")]
    assert errors == []
    schedules = {r["Properties"]["Name"]: r["Properties"] for r in rendered["Resources"].values()
                 if r["Type"] == "AWS::Scheduler::Schedule"}
    assert sorted(schedules) == ["refresh-bikeways", "scrape-agenda", "scrape-prices"]
    agenda = schedules["scrape-agenda"]
    assert agenda["ScheduleExpression"] == "rate(10 minutes)"
    assert json.loads(agenda["Target"]["Input"]) == {"job": "agenda", "scheduled_time": "<aws.scheduler.scheduled-time>"}
    assert agenda["Target"]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 600, "MaximumRetryAttempts": 3}
    assert "DeadLetterConfig" in agenda["Target"]
    functions = [r["Properties"] for r in rendered["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert {f["Handler"] for f in functions} == {"functions.scrape.handler", "functions.carto_refresh.handler",
                                                 "functions.dispatch.handler"}
    for f in functions:  # secrets come from SSM, never plain variables
        assert set(f["Environment"]["Variables"]) in ({"JOBS_FILE", "SECRETS_SSM_PATH"}, {"JOBS_FILE", "WORK_QUEUE_URL"})
    mapping = rendered["Resources"]["WorkQueueMapping"]["Properties"]
    assert mapping["BatchSize"] == 1 and mapping["ScalingConfig"]["MaximumConcurrency"] == plan.SHARDS_AT_ONCE


def test_a_large_schedule_goes_through_the_dispatcher(tmp_path, monkeypatch):
    many = "".join(f'[[scrape]]\nname = "p{i}"\nurl = "http://x/{i}"\n' for i in range(plan.DISPATCH_THRESHOLD + 1))
    monkeypatch.setenv("JOBS_TOML", many + '[[scrape]]\nname = "hourly"\nurl = "http://x/h"\nevery = "1h"\n')
    schedules = plan.load()
    assert [(s.name, s.function.kind, json.loads(s.input)) for s in schedules] == [
        ("dispatch-rate-10-minutes", "dispatch", {"schedule": "rate(10 minutes)",
                                                  "scheduled_time": "<aws.scheduler.scheduled-time>"}),
        ("scrape-hourly", "scrape", {"job": "hourly", "scheduled_time": "<aws.scheduler.scheduled-time>"}),
    ]
    assert [m for m in lint_all(json.dumps(template.render(schedules))) if m.rule.id.startswith("E")] == []


def test_template_with_a_broken_reference_fails_lint(jobs_file):
    """The lint check above can fail: a dangling reference is an error."""
    rendered = template.render(plan.load())
    rendered["Resources"]["ScrapeFunction"]["Properties"]["Role"] = {"Fn::GetAtt": ["NoSuchRole", "Arn"]}
    assert [m for m in lint_all(json.dumps(rendered)) if m.rule.id.startswith("E")]


def small_zip(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("functions/scrape.py", "def handler(event, context):\n    return event\n")
    path = tmp_path / "lambda.zip"
    path.write_bytes(buffer.getvalue())
    return path


def test_deploy_to_aws_creates_then_updates_idempotently(moto_server, jobs_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CARTO_API_KEY", "k3y-v4lue-123")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw-secret@db.example.com/d?sslmode=require")
    zip_path = small_zip(tmp_path)
    assert deploy.main(["--zip", str(zip_path), "--secrets-from-env"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["schedules"] == 3 and first["deleted_schedules"] == 0
    assert "k3y-v4lue" not in json.dumps(first)

    lam, scheduler, ssm = boto3.client("lambda"), boto3.client("scheduler"), boto3.client("ssm")
    fn = lam.get_function_configuration(FunctionName=plan.FUNCTIONS["scrape"].name)
    assert (fn["Runtime"], fn["Handler"], fn["Timeout"]) == (plan.RUNTIME, "functions.scrape.handler", 540)
    assert fn["Environment"]["Variables"] == {"JOBS_FILE": "jobs.toml", "SECRETS_SSM_PATH": plan.SECRETS_PATH}
    # (moto does not echo a function's DeadLetterConfig back; the template test checks it)
    s = scheduler.get_schedule(Name="scrape-prices", GroupName=plan.STACK)
    assert s["ScheduleExpression"] == "cron(20 * * * ? *)"
    assert s["Target"]["Arn"] == fn["FunctionArn"]
    assert json.loads(s["Target"]["Input"])["scheduled_time"] == "<aws.scheduler.scheduled-time>"
    assert s["Target"]["RetryPolicy"]["MaximumEventAgeInSeconds"] == 3600
    param = ssm.get_parameter(Name=f"{plan.SECRETS_PATH}CARTO_API_KEY", WithDecryption=True)["Parameter"]
    assert (param["Type"], param["Value"]) == ("SecureString", "k3y-v4lue-123")
    policy = boto3.client("iam").get_role_policy(RoleName=f"{plan.STACK}-scheduler", PolicyName=f"{plan.STACK}-scheduler")
    actions = {a for st in policy["PolicyDocument"]["Statement"] for a in st["Action"]}
    assert actions == {"lambda:InvokeFunction", "sqs:SendMessage"}

    # Again, with one job removed: functions updated, its schedule deleted, nothing duplicated.
    jobs_file.write_text(JOBS.replace('[[scrape]]\nname = "prices"', '[[scrape]]\nname = "prices2"'))
    assert deploy.main(["--zip", str(zip_path)]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["deleted_schedules"] == 1, (second, jobs_file.read_text())
    names = sorted(x["Name"] for x in scheduler.list_schedules(GroupName=plan.STACK)["Schedules"])
    assert names == ["refresh-bikeways", "scrape-agenda", "scrape-prices2"]
    assert len(lam.list_functions()["Functions"]) == 3
    mappings = lam.list_event_source_mappings(FunctionName=plan.FUNCTIONS["scrape"].name)["EventSourceMappings"]
    assert len(mappings) == 1 and mappings[0]["EventSourceArn"].endswith(plan.WORK_QUEUE)


def test_deploy_without_a_zip_says_so(tmp_path, capsys):
    assert deploy.main(["--zip", str(tmp_path / "none.zip")]) == 2
    assert "run `make build` first" in capsys.readouterr().err


def test_similar_and_long_job_names_get_distinct_schedules(monkeypatch):
    long = "x" * 100
    names = ["feed-1", "feed_1", long, long[:-1] + "y"]
    monkeypatch.setenv("JOBS_TOML", "".join(f'[[scrape]]\nname = "{n}"\nurl = "http://x/"\n' for n in names))
    schedules = plan.load()
    assert len({s.name for s in schedules}) == 4 and all(len(s.name) <= 64 for s in schedules)
    rendered = template.render(schedules)
    assert sum(r["Type"] == "AWS::Scheduler::Schedule" for r in rendered["Resources"].values()) == 4
