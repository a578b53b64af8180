"""The AWS fan-out: the dispatcher puts shards on the work queue (moto's SQS, in server mode),
and the scrape handler runs each shard for real, from SQS-shaped events, against PostgreSQL."""

import json

import boto3
import pytest

from functions import dispatch as dispatch_fn
from functions import scrape as scrape_fn
from shared.app import dispatch

RUN = "2026-11-21T10:00:00Z"


@pytest.fixture
def work_queue(moto_server, monkeypatch):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    monkeypatch.setenv("WORK_QUEUE_URL", url)
    return sqs, url


@pytest.fixture
def jobs(httpserver, tmp_path, monkeypatch):
    httpserver.expect_request("/page").respond_with_data("<p>same for all</p>")
    text = "".join(f'[[scrape]]\nname = "site{i}"\nurl = "{httpserver.url_for("/page")}?n={i}"\n\n' for i in range(25))
    text += f'[[scrape]]\nname = "hourly"\nurl = "{httpserver.url_for("/page")}"\nevery = "1h"\n'
    (tmp_path / "jobs.toml").write_text(text)
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "jobs.toml"))
    monkeypatch.setattr(dispatch, "SHARD_SIZE", 10)
    return [f"site{i}" for i in range(25)]


def receive_all(sqs, url):
    messages = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return messages
        messages += got


def sqs_event(message):
    return {"Records": [{"messageId": message["MessageId"], "eventSource": "aws:sqs", "body": message["Body"]}]}


def test_dispatcher_shards_a_schedule_and_every_shard_runs_once(database_url, db, work_queue, jobs):
    sqs, url = work_queue
    sent = dispatch_fn.handler({"schedule": "rate(10 minutes)", "scheduled_time": RUN}, None)
    assert sent == {"shards": 3, "jobs": 25}
    messages = receive_all(sqs, url)
    bodies = [json.loads(m["Body"]) for m in messages]
    assert {b["run_key"] for b in bodies} == {RUN}
    assert sorted(name for b in bodies for name in b["jobs"]) == sorted(jobs)  # each job in one shard
    assert "hourly" not in {name for b in bodies for name in b["jobs"]}  # another schedule
    for message in messages:
        outcomes = {r["outcome"] for r in scrape_fn.handler(sqs_event(message), None)["results"]}
        assert outcomes == {"new"}
    # SQS delivers at least once: a shard delivered again records nothing new.
    again = scrape_fn.handler(sqs_event(messages[0]), None)["results"]
    assert {r["outcome"] for r in again} == {"duplicate"}
    assert db.run("SELECT count(*), sum(cardinality(seen_at)) FROM scraps")[0] == [25, 25]


def test_a_manual_dispatch_carries_its_run_key_to_every_shard(database_url, db, work_queue, jobs):
    """A manual invoke's run_key is any text, not a time: the shards run under it, once."""
    sqs, url = work_queue
    assert dispatch_fn.handler({"schedule": "rate(10 minutes)", "run_key": "by hand #1"}, None)["shards"] == 3
    messages = receive_all(sqs, url)
    assert {json.loads(m["Body"])["run_key"] for m in messages} == {"by hand #1"}
    outcomes = [r["outcome"] for m in messages for r in scrape_fn.handler(sqs_event(m), None)["results"]]
    assert outcomes == ["new"] * 25
    assert {r["outcome"] for r in scrape_fn.handler(sqs_event(messages[0]), None)["results"]} == {"duplicate"}
    # Without a key, every shard is a new check.
    dispatch_fn.handler({"schedule": "rate(10 minutes)"}, None)
    assert all("run_key" not in json.loads(m["Body"]) for m in receive_all(sqs, url))


def test_shards_are_stable_between_runs(jobs):
    assert dispatch.shards_for("rate(10 minutes)") == dispatch.shards_for("rate(10 minutes)")
    assert dispatch.shards_for("cron(0 4 * * ? *)") == []


def test_dispatcher_needs_a_schedule_and_a_queue(work_queue, jobs, monkeypatch):
    with pytest.raises(Exception, match="names the schedule"):
        dispatch_fn.handler({"scheduled_time": RUN}, None)
    monkeypatch.delenv("WORK_QUEUE_URL")
    with pytest.raises(Exception, match="WORK_QUEUE_URL is not set"):
        dispatch_fn.handler({"schedule": "rate(10 minutes)", "scheduled_time": RUN}, None)


def scheduler_input(spec) -> dict:
    """What EventBridge Scheduler sends for a planned schedule: its input, the time filled in."""
    return json.loads(spec.input.replace("<aws.scheduler.scheduled-time>", RUN))


def test_a_grouped_schedule_runs_all_its_jobs_in_one_invocation(database_url, db, jobs):
    from infra import plan

    planned = plan.load()
    often, hourly = planned.schedules  # 25 jobs every 10 minutes, one hourly: under the threshold
    assert (often.function.kind, len(often.jobs), hourly.jobs) == ("scrape", 25, ("hourly",))
    results = scrape_fn.handler(scheduler_input(often), None)["results"]
    assert sorted(r["job"] for r in results) == sorted(jobs) and {r["outcome"] for r in results} == {"new"}
    # A second delivery of the same scheduled run records nothing again.
    assert {r["outcome"] for r in scrape_fn.handler(scheduler_input(often), None)["results"]} == {"duplicate"}
    assert db.run("SELECT count(*) FROM scrape_targets WHERE name = 'hourly'")[0][0] == 0


def test_past_the_threshold_the_planned_schedule_invokes_the_dispatcher(database_url, work_queue, jobs, monkeypatch):
    from infra import plan

    monkeypatch.setattr(plan, "DISPATCH_THRESHOLD", 20)
    often = plan.load().schedules[0]
    assert often.function.handler == "functions.dispatch.handler"
    assert dispatch_fn.handler(scheduler_input(often), None) == {"shards": 3, "jobs": 25}
