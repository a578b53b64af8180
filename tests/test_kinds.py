"""The job-kind contract: one registry feeding config, the AWS plan, the Heroku schedule,
invoke-local and the entry points; one error base caught at the edge; jobs built per job, so
one job's unset ${VARIABLE} never stops another; each result line printed once; logs as text
or JSON."""

import dataclasses
import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import heroku_schedule
from infra import plan, template
from shared.app import config, entry, events
from shared.app.kinds import KINDS
from shared.core import errors, keys, log
from shared.core.kind import Kind
from shared.core.report import Chart, Column, Section, Tables, View, Window
from shared.core.result import Result, exit_code

ROOT = Path(__file__).resolve().parent.parent


def test_every_kind_is_wired_everywhere_from_its_registration():
    for kind in KINDS.values():
        module = importlib.import_module(f"functions.{kind.command}")
        assert callable(module.handler) and callable(module.main)
        assert (ROOT / "events" / f"scheduler-{kind.command}.json").exists()  # invoke-local's sample
        function = plan.FUNCTIONS[kind.name]
        assert (function.handler, function.timeout, function.memory) == (kind.handler, kind.timeout, kind.memory)
    # The Procfile is the one list a platform reads as a file: it must name every kind's command.
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert {f"python -m functions.{k.command}" for k in KINDS.values()} <= set(procfile.values())
    for kind in KINDS.values():
        assert procfile[kind.command] == f"python -m functions.{kind.command}"


def test_a_functions_module_is_a_few_lines():
    for kind in KINDS.values():
        code = [line for line in (ROOT / "functions" / f"{kind.command}.py").read_text().splitlines()
                if line.strip() and not line.startswith(('"""', "(see", "#"))]
        assert len(code) <= 10, code


def test_heroku_schedule_commands_come_from_the_registry():
    schedules = config.schedules(ROOT / "jobs.example.toml")
    commands = [command for _, command in heroku_schedule.entries(schedules, "jobs.example.toml")]
    assert commands == [f"python -m functions.{KINDS['scrape'].command} --every 10m",
                        f"python -m functions.{KINDS['refresh'].command} --every 1d --at 04:00"]


def test_result_exit_codes():
    assert exit_code([]) == 0
    assert exit_code([Result("a", "new"), Result("b", "duplicate")]) == 0
    assert exit_code([Result("a", "new"), Result("b", "error", "x")]) == errors.FAILED == 1
    assert exit_code([Result("a", "error", "x"), Result("b", "invalid", "y")]) == errors.USAGE == 2
    assert issubclass(errors.EventError, errors.ConfigError) and errors.ConfigError.exit_code == 2
    assert errors.JobError.exit_code == 1


# --- ${VARIABLE}s are expanded per job, when the job is used ---------------------------------

@pytest.fixture
def page(httpserver):
    httpserver.expect_request("/p").respond_with_data("<p>hello</p>", content_type="text/html")
    return httpserver.url_for("/p")


def write_jobs(tmp_path, monkeypatch, text):
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    monkeypatch.setenv("JOBS_FILE", str(path))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    return path


def test_the_example_jobs_file_runs_its_scrape_jobs_with_nothing_set(monkeypatch):
    for var in ("CARTO_USERNAME", "CARTO_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JOBS_FILE", str(ROOT / "jobs.example.toml"))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    jobs, invalid = entry.resolve(KINDS["scrape"], events.Request())
    assert [job.name for job in jobs] == ["council-agenda"] and invalid == []
    jobs, invalid = entry.resolve(KINDS["refresh"], events.Request())
    assert jobs == [] and [r.outcome for r in invalid] == ["invalid"]
    assert "jobs.example.toml: [[refresh]] job 'bikeways': key 'username' uses ${CARTO_USERNAME}" in invalid[0].reason


def test_an_unset_variable_stops_only_its_own_job(database_url, page, tmp_path, monkeypatch, capsys):
    from functions import carto_refresh, scrape

    monkeypatch.delenv("UNSET_TOKEN", raising=False)
    path = write_jobs(tmp_path, monkeypatch, f'''
[[scrape]]
name = "good"
url = "{page}"

[[scrape]]
name = "needs-token"
url = "{page}?token=${{UNSET_TOKEN}}"

[[refresh]]
name = "nightly"
username = "someone"
api_key = "${{UNSET_TOKEN}}"
''')
    assert scrape.main(["--job", "good"]) == 0  # neither the other scrape job nor the refresh matter
    assert capsys.readouterr().out == "good: new\n"
    assert scrape.main([]) == 2  # the broken job is named, the good one still checked
    out, err = capsys.readouterr()
    assert out == "good: unchanged\n"
    assert err == f"error: {path}: [[scrape]] job 'needs-token': key 'url' uses ${{UNSET_TOKEN}}, which is not set" \
                  " in the environment\n"
    assert carto_refresh.main([]) == 2
    assert f"{path}: [[refresh]] job 'nightly': key 'api_key' uses ${{UNSET_TOKEN}}" in capsys.readouterr().err


def test_lambda_raises_for_an_invalid_job_after_running_the_others(database_url, page, tmp_path, monkeypatch):
    from functions import scrape

    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "good"\nurl = "{page}"\n'
                                      '[[scrape]]\nname = "bad"\nurl = "${UNSET_URL_VAR}"\n')
    monkeypatch.delenv("UNSET_URL_VAR", raising=False)
    with pytest.raises(entry.RunFailed, match=r"1 of 2 scrape jobs failed: bad: invalid: .*UNSET_URL_VAR"):
        scrape.handler({}, None)
    from shared.core import db
    with db.connection() as con:
        assert con.run("SELECT target FROM scraps") == [["good"]]


# --- the edge: one line, the documented exit code, never a traceback ----------------------------

@pytest.mark.parametrize("env, code, message", [
    ({"DATABASE_URL": "mysql://u:pw-9f8e7d@h/db"}, 2, "error: DATABASE_URL must start with postgres://"),
    ({"DATABASE_URL": "postgresql://u:pw-9f8e7d@127.0.0.1:1/db"}, 1, "error: cannot connect to postgresql://u@127.0.0.1:1/db"),
    ({"SCRAPE_CONCURRENCY": "lots"}, 2, "error: SCRAPE_CONCURRENCY='lots' must be a whole number"),
    ({"SCRAPE_TIME_BUDGET": "-3"}, 2, "error: SCRAPE_TIME_BUDGET='-3' must be a number of seconds above 0"),
    ({"SCRAPE_TIME_BUDGET": "\u0661\u0662"}, 2, "error: SCRAPE_TIME_BUDGET='\u0661\u0662' must be a number of seconds"),
    ({"SCRAPE_CONCURRENCY": "\u00b2"}, 2, "error: SCRAPE_CONCURRENCY='\u00b2' must be a whole number from 1 to 500"),
    ({"JOBS_TOML": "[[scrape]]\nname = 3\n"}, 2, "error: $JOBS_TOML: [[scrape]] #1: key 'name' must be a string"),
    ({"JOBS_TOML": "[[scrape]]\nurl = 'http://x/'\n"}, 2, "error: $JOBS_TOML: [[scrape]] #1: missing required key 'name'"),
    ({"JOBS_TOML": "[[scrap]]\nname = 'a'\n"}, 2, "error: $JOBS_TOML: unknown section [[scrap]] (known: scrape, refresh)"),
])
def test_errors_at_the_edge_are_one_line_with_their_exit_code(page, tmp_path, env, code, message):
    environment = {**os.environ, "JOBS_TOML": f'[[scrape]]\nname = "p"\nurl = "{page}"\n', **env}
    done = subprocess.run([sys.executable, "-m", "functions.scrape"], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == code
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and "pw-9f8e7d" not in done.stdout + done.stderr


# --- each result once; logs as text or JSON ---------------------------------------------------

def run_module(module: str, env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_each_result_line_is_printed_once_on_the_command_line(database_url, page):
    jobs = f'[[scrape]]\nname = "only-once"\nurl = "{page}"\n' \
           '[[refresh]]\nname = "refresh-once"\nmode = "postgres"\nsql = "SELECT 1"\n'
    for module, name in (("functions.scrape", "only-once"), ("functions.carto_refresh", "refresh-once")):
        done = run_module(module, {"JOBS_TOML": jobs})
        assert done.returncode == 0, done.stderr
        assert done.stdout.count(name) == 1 and name not in done.stderr, (done.stdout, done.stderr)


def test_lambda_logs_one_json_record_per_result(database_url, page):
    """In Lambda (AWS_LAMBDA_FUNCTION_NAME set) logs default to JSON, one object per line, with
    the job, outcome, reason and duration of each result: what CloudWatch Logs Insights queries."""
    jobs = f'[[scrape]]\nname = "p"\nurl = "{page}"\n[[scrape]]\nname = "down"\nurl = "http://127.0.0.1:9/"\n'
    code = "from functions import scrape; scrape.handler({}, None)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JOBS_TOML": jobs, "AWS_LAMBDA_FUNCTION_NAME": "scheduled-jobs-scrape"})
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    results = [r for r in records if "outcome" in r]
    assert [(r["job"], r["outcome"]) for r in results] == [("p", "new"), ("down", "error")]
    assert results[1]["reason"] == "connection refused" and results[1]["level"] == "WARNING"
    assert all(isinstance(r["duration"], float) for r in results)
    assert sum("down" in json.dumps(r) for r in records) == 1  # its result alone: no warning repeating it


def test_library_chatter_is_quiet_unless_debug(monkeypatch):
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    log.setup()
    assert all(logging.getLogger(name).getEffectiveLevel() == logging.WARNING for name in ("apprise", "botocore"))
    monkeypatch.setenv("LOG_LEVEL", "debug")
    log.setup()
    assert logging.getLogger("apprise").getEffectiveLevel() == logging.DEBUG
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    log.setup()


def test_json_logs_redact_secrets(monkeypatch, capsys):
    monkeypatch.setenv("LOG_FORMAT", "json")
    log.add_secret("sk-json-secret-77")
    root = logging.getLogger()
    saved = list(root.handlers)
    stream = logging.StreamHandler(sys.stdout)
    root.handlers = [stream]
    try:
        log.setup()
        logging.getLogger("t").warning("key is %s", "sk-json-secret-77", extra={"job": "j", "outcome": "error"})
    finally:
        root.handlers = saved
        monkeypatch.setenv("LOG_FORMAT", "text")
        log.setup()
    record = json.loads(capsys.readouterr().out)
    assert record["message"] == "key is ***" and (record["job"], record["outcome"]) == ("j", "error")


def test_a_run_on_a_heroku_dyno_ends_within_the_scheduler_slot(monkeypatch):
    kind = KINDS["scrape"]
    monkeypatch.delenv("SCRAPE_TIME_BUDGET", raising=False)
    monkeypatch.delenv("DYNO", raising=False)
    assert entry.time_budget(kind) is None  # a terminal: no limit unless asked
    monkeypatch.setenv("DYNO", "scheduler.1234")
    assert entry.time_budget(kind) == entry.HEROKU_BUDGET == 540
    monkeypatch.setenv("SCRAPE_TIME_BUDGET", "60")
    assert entry.time_budget(kind) == 60
    assert entry.time_budget(kind, 5) == 5


# --- a third kind: its own package plus one line in the kinds list --------------------------------

@dataclasses.dataclass(frozen=True)
class PingJob:
    """A small kind of the test's own: it 'pings' a name, with the keys every kind has."""
    name: str
    target: str = "x"
    every: str | None = None
    at: str | None = None
    cron: str | None = None
    notify: tuple[str, ...] | None = None
    alert_after: int = 3
    heartbeat: str | None = None

    def __post_init__(self):
        keys.check_common(self, "1h")

    def secrets(self) -> tuple[str, ...]:
        return ()

    @property
    def where(self) -> str:
        return self.target


def _ping_run(jobs, run):
    return [Result(job.name, "ok", f"pinged {job.target}") for job in jobs]


def _ping_report(con, window: Window) -> Section:
    """Its section of the history report: a line per job of the jobs file (a real kind reads its
    own tables, through its store.py)."""
    (answered,) = con.run("SELECT 'answered'")[0]
    views = [View(kind="ping", css="ping", name=name, subtitle="ping job", link=None, every=every, error_streak=0,
                  last_error=None, failed_word="failed ping", quiet=f"the database {answered}", quiet_ok=True,
                  facts=[f"the database {answered}"], meta=[f"the database {answered}"],
                  timeline=window.timeline(("pings",)), chart=Chart(stack=(("pings", "#81c784", "pings"),),
                                                                    tooltip=(("pings", "pings"),)),
                  interval=window.interval(name), columns=[Column("pings", 6)], days=list, total=["0"],
                  periods=list, day_count=0, days_words="no pings kept")
             for name, every in window.schedules.items()]
    return Section(views, lambda view: view, Tables({"ping_rows": 0}, records=["no pings recorded"]))


PING = Kind(name="ping", job=PingJob, command="ping", summary="Ping things", default_every="1h", timeout=60,
            memory=128, run=_ping_run, report=_ping_report)


@pytest.fixture
def third_kind(monkeypatch):
    """The one line: the kind added to the kinds list, for this test only."""
    monkeypatch.setitem(KINDS, "ping", PING)
    return PING


def test_a_third_kind_is_picked_up_by_config_the_entry_adapter_the_plan_heroku_and_the_report(
        third_kind, database_url, tmp_path, monkeypatch, capsys):
    path = tmp_path / "jobs.toml"
    path.write_text('[[scrape]]\nname = "page"\nurl = "http://127.0.0.1:1/"\n\n'
                    '[[ping]]\nname = "hello"\ntarget = "world"\nat = ":30"\n')
    monkeypatch.setenv("JOBS_FILE", str(path))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    # config: its section, its keys checked by its own dataclass
    (ping,) = [e for e in config.entries() if e.kind == "ping"]
    assert config.build(ping) == PingJob("hello", "world", at=":30")
    # the entry adapter: a run of that kind through the one request path
    results = entry.run_request(third_kind, events.Request(), None)
    assert [r.line() for r in results] == ["hello: ok: pinged world"]
    # the AWS plan: a function sized by its Kind, a schedule at its default interval
    the_plan = plan.load()
    assert plan.function_specs()["ping"].name.endswith("-ping") and plan.function_specs()["ping"].memory == 128
    (schedule,) = [s for s in the_plan.schedules if s.function.kind == "ping"]
    assert (schedule.expression, schedule.jobs) == ("cron(30 * * * ? *)", ("hello",))
    assert "PingFunction" in template.render(the_plan)["Resources"]
    # the Heroku Scheduler entries
    assert heroku_schedule.main() == 0
    assert "Every hour at :30            python -m functions.ping --every 1h --at :30" in capsys.readouterr().out
    # the history report: its section, in the text and on the page, and its tables' account
    from functions import report as report_fn

    page = tmp_path / "report.html"
    assert report_fn.main(["--days", "2", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "hello  ping job  every 1h\n  the database answered\n" in out
    assert "ping_rows 0" in out and "; no pings recorded" in out
    assert 'data-ping="hello"' in page.read_text() and 'href="#ping0"' in page.read_text()
