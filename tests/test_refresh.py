"""The refresh run end to end: configuration (file and environment), the CLI's lines and exit
codes, the Lambda handler, direct PostgreSQL mode and `make invoke-local`."""

import time

import pytest

from devtools import invoke_local
from functions import carto_refresh
from shared.app import entry, events
from shared.app.kinds import KINDS
from shared.refresh import run as refresh
from shared.refresh.job import ENV_KEYS, RefreshJob
from tests import runs
from tests.carto_fixtures import KEY, emulator, load_bikeways  # noqa: F401 (fixture)


def cli(capsys, *args):
    code = carto_refresh.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_config(tmp_path, monkeypatch):
    """No JOBS_FILE, no ./jobs.toml, no CARTO_* variables."""
    monkeypatch.chdir(tmp_path)
    for var in ("JOBS_FILE", "JOBS_TOML", *ENV_KEYS):
        monkeypatch.delenv(var, raising=False)


def test_environment_job_runs_the_article_refresh(emulator, no_config, monkeypatch, capsys, db):
    monkeypatch.setenv("CARTO_SQL_API_URL", emulator.sql_url())
    monkeypatch.setenv("CARTO_API_KEY", KEY)
    code, out, err = cli(capsys)
    assert code == 0 and out.startswith("carto: ok: done via SQL API in ") and out.endswith(
        ", 1 row: process_data = 4\n")
    assert db.run("SELECT count(*) FROM bikeways_demand")[0][0] == 4
    assert KEY not in out + err


def test_environment_defaults(no_config, monkeypatch):
    monkeypatch.setenv("CARTO_USERNAME", "raphaeld")
    monkeypatch.setenv("CARTO_API_KEY", "k-123456")
    (job,), invalid = entry.resolve(KINDS["refresh"], events.Request())
    assert invalid == []
    assert (job.name, job.sql, job.mode) == ("carto", "SELECT process_data()", "carto")
    from shared.refresh import carto
    assert carto.endpoints(job) == carto.Endpoints("https://raphaeld.carto.com/api/v2/sql",
                                                   "https://raphaeld.carto.com/api/v2/sql/job")
    monkeypatch.setenv("CARTO_SQL", "SELECT other()")
    assert entry.resolve(KINDS["refresh"], events.Request())[0][0].sql == "SELECT other()"


@pytest.mark.parametrize("env, message", [
    ({}, "nothing to run: no jobs file at jobs.toml (set JOBS_FILE or JOBS_TOML), and no job from the"
         " environment (CARTO_USERNAME, CARTO_API_KEY, CARTO_SQL, CARTO_SQL_API_URL)"),
    ({"CARTO_USERNAME": "raphaeld"}, "environment (job 'carto'): missing required variable CARTO_API_KEY (the API key)"),
    ({"CARTO_API_KEY": "k-123456", "CARTO_SQL_API_URL": "https://carto.example.org/api/v2/sql"},
     "missing required variable CARTO_USERNAME"),
    ({"CARTO_API_KEY": "k-123456", "CARTO_SQL_API_URL": "https://x.org/user/a/api/v2/sql?api_key=k-123456"},
     "CARTO_SQL_API_URL must be a plain endpoint"),
])
def test_bad_environment_exits_2(no_config, monkeypatch, capsys, env, message):
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    code, out, err = cli(capsys)
    assert (code, out) == (2, "") and message in err
    assert "k-123456" not in err


@pytest.mark.parametrize("text, message", [
    ('[[refresh]]\nname = "a"\nusername = "u"\napi_key = "k-1234"\nsql_api = "x"\n', "job 'a': unknown key 'sql_api'"),
    ('[[refresh]]\nname = "a"\nusername = "u"\n', "job 'a': missing required key 'api_key'"),
    ('[[refresh]]\nname = "a"\nmode = "bigquery"\n', "job 'a': mode 'bigquery' must be one of carto, carto3, postgres"),
    ('[[refresh]]\nname = "a"\nmode = "carto3"\napi_key = "t-1234"\n', "job 'a': mode 'carto3' needs keys 'base_url'"),
    ('[[refresh]]\nname = "a"\nmode = "postgres"\napi_key = "k-1234"\n', "job 'a': key 'api_key' is for the CARTO"),
    ('[[refresh]]\nname = "a"\nusername = "u"\napi_key = "${UNSET_KEY_VAR}"\n', "job 'a': key 'api_key' uses ${UNSET_KEY_VAR}"),
    ('[[refresh]]\nname = "a"\nusername = "u"\napi_key = "k-1234"\ntime_budget = -1\n',
     "job 'a': key 'time_budget' must be a positive number"),
    ('[[refresh]]\nname = "a"\nmode = "postgres"\ndatabase_url = "mysql://x"\n', "job 'a': key 'database_url'"),
])
def test_bad_jobs_file_exits_2_naming_job_and_key(jobs_file, monkeypatch, capsys, text, message):
    monkeypatch.delenv("UNSET_KEY_VAR", raising=False)
    jobs_file(text)
    code, out, err = cli(capsys)
    assert (code, out) == (2, "") and message in err


def test_jobs_toml_variable_is_read(emulator, no_config, monkeypatch, capsys):
    monkeypatch.setenv("JOBS_TOML", f'[[refresh]]\nname = "v"\nsql_api_url = "{emulator.sql_url()}"\napi_key = "{KEY}"\n')
    code, out, _ = cli(capsys)
    assert code == 0 and out.startswith("v: ok: ")


def test_jobs_file_selection_and_exit_codes(emulator, jobs_file, capsys):
    jobs_file(f'''
[[refresh]]
name = "good"
sql_api_url = "{emulator.sql_url()}"
api_key = "{KEY}"

[[refresh]]
name = "broken"
sql = "SELECT process_dat()"
sql_api_url = "{emulator.sql_url()}"
api_key = "{KEY}"
''')
    code, out, _ = cli(capsys, "--job", "good")
    assert code == 0 and out.startswith("good: ok: ")
    code, out, _ = cli(capsys)
    lines = out.splitlines()
    assert code == 1 and len(lines) == 2 and lines[0].startswith("good: ok: ")
    assert lines[1] == "broken: error: HTTP 400: function process_dat() does not exist (hint: No function matches" \
                       " the given name and argument types. You might need to add explicit type casts.)"
    code, out, err = cli(capsys, "--job", "nope")
    assert (code, out) == (2, "") and "no [[refresh]] job named 'nope' (known: good, broken)" in err


def test_handler_returns_results_and_raises_on_failure(emulator, jobs_file):
    jobs_file(f'[[refresh]]\nname = "b"\nsql_api_url = "{emulator.sql_url()}"\napi_key = "{KEY}"\n'
              f'[[refresh]]\nname = "bad"\nsql_api_url = "{emulator.sql_url()}"\napi_key = "nope-1234"\n')
    result = carto_refresh.handler({"job": "b", "scheduled_time": "2026-11-21T10:00:00Z"}, None)
    assert result["results"][0]["outcome"] == "ok"
    with pytest.raises(entry.RunFailed, match=r"1 of 2 refresh jobs failed: bad: error: HTTP 401"):
        carto_refresh.handler({}, None)


class LambdaContext:  # the two things Lambda's context object offers that we use
    def __init__(self, remaining_ms):
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self):
        return self.remaining_ms


def test_lambda_deadline_keeps_a_margin():
    def seconds_left(budget, context):  # bracketed by the clock, so a stalled machine cannot fail it
        before = time.monotonic()
        end = entry.deadline(budget, context)
        after = time.monotonic()
        return end - after - 1e-6, end - before + 1e-6

    assert entry.deadline(None, None) is None
    low, high = seconds_left(None, LambdaContext(60_000))
    assert low <= 50 <= high  # 60 s less 10 s
    low, high = seconds_left(None, LambdaContext(2_000))
    assert low <= 1 <= high  # half of a short remainder
    low, high = seconds_left(1, LambdaContext(60_000))
    assert low <= 1 <= high  # a time budget shorter than Lambda's


def test_handler_is_bounded_by_lambda_time(emulator, jobs_file):
    emulator.set_rate_limit(1, window_s=60)
    jobs_file(f'[[refresh]]\nname = "b"\nsql_api_url = "{emulator.sql_url()}"\napi_key = "{KEY}"\n')
    carto_refresh.handler({}, LambdaContext(30_000))  # uses the window up
    started = time.monotonic()
    with pytest.raises(entry.RunFailed, match="gave up after 1 tries"):
        carto_refresh.handler({}, LambdaContext(30_000))
    assert time.monotonic() - started < 10  # gave up at once, not after the 20 s Lambda allows


# -- direct PostgreSQL --------------------------------------------------------------------------

def pg_job(**keys) -> RefreshJob:
    return RefreshJob(**{"name": "pg", "mode": "postgres", **keys})


def test_postgres_mode_runs_on_database_url(database_url, db):
    load_bikeways(database_url)
    (result,) = runs.refresh([pg_job()])
    assert result.outcome == "ok" and result.reason.endswith(", 1 row: process_data = 4")
    assert result.reason.startswith("done on PostgreSQL in ")
    assert db.run("SELECT count(*) FROM bikeways_demand")[0][0] == 4


def test_postgres_mode_errors(database_url):
    (result,) = runs.refresh([pg_job()])
    assert result.line() == ("pg: error: SQLSTATE 42883: function process_data() does not exist (hint: No function"
                             " matches the given name and argument types. You might need to add explicit type casts.)")
    (result,) = runs.refresh([pg_job(sql="SELECT pg_sleep(5)", statement_timeout=0.2)])
    assert result.line() == ("pg: error: statement timeout: stopped after 0.2 s (raise statement_timeout, or make"
                             " the statement faster)")
    (result,) = runs.refresh([pg_job(sql="DO $$ BEGIN RAISE EXCEPTION 'no input yet'; END $$")])
    assert result.reason == "SQLSTATE P0001: no input yet (where: PL/pgSQL function inline_code_block line 1 at RAISE)"


def test_postgres_mode_own_database_url_and_password_never_shown(database_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@/nowhere?host=/nonexistent")
    (result,) = runs.refresh([pg_job(database_url=database_url, sql="SELECT 41 + 1 AS answer")])
    assert result.reason.endswith(": answer = 42")
    secret = "pw-hunter2-secret"
    job = pg_job(database_url=f"postgresql://refresher:{secret}@127.0.0.1:1/db", time_budget=0.3)
    (result,) = runs.refresh([job], timing=refresh.carto.Timing(backoff_initial=0.01))
    assert result.failed and "cannot connect to postgresql://refresher@127.0.0.1:1/db" in result.reason
    assert "gave up after" in result.reason and secret not in result.line()


def test_postgres_mode_cli(database_url, jobs_file, capsys):
    load_bikeways(database_url)
    jobs_file('[[refresh]]\nname = "local"\nmode = "postgres"\nsql = "SELECT process_data()"\n')
    code, out, _ = cli(capsys)
    assert code == 0 and out.startswith("local: ok: done on PostgreSQL")


# -- make invoke-local ----------------------------------------------------------------------------

def test_invoke_local_shows_the_bikeways_refresh(database_url, monkeypatch, capsys, db):
    for var in ("JOBS_FILE", "DEMO_URL", "DEMO_CARTO_SQL_API_URL", "DEMO_CARTO_API_KEY"):
        monkeypatch.setenv(var, "")  # invoke-local sets them; monkeypatch restores them after
    assert invoke_local.main(["carto_refresh"]) == 0
    out = capsys.readouterr().out
    assert '"outcome": "ok"' in out and "process_data = 4" in out
    assert invoke_local.main(["carto_refresh"]) == 0  # the example loads idempotently
    assert db.run("SELECT sum(suggestions) FROM bikeways_demand")[0][0] == 7


def test_an_invalid_refresh_time_budget_is_a_usage_error(monkeypatch, capsys):
    from functions import carto_refresh

    monkeypatch.setenv("REFRESH_TIME_BUDGET", "soon")
    assert carto_refresh.main([]) == 2
    assert "REFRESH_TIME_BUDGET='soon' must be a number of seconds above 0" in capsys.readouterr().err


def test_a_refused_login_is_not_retried(database_url, monkeypatch, capsys):
    """A wrong database name is an answer, not an outage: one try, a clear line, exit 1."""
    from functions import carto_refresh

    monkeypatch.delenv("JOBS_TOML", raising=False)
    monkeypatch.setenv("JOBS_TOML", '[[refresh]]\nname = "pg"\nmode = "postgres"\nsql = "SELECT 1"\n'
                                    f'database_url = "{database_url.replace("/tests", "/no_such_db", 1)}"\n')
    import time

    started = time.monotonic()
    assert carto_refresh.main([]) == 1
    assert time.monotonic() - started < 5
    out = capsys.readouterr().out
    assert out.startswith("pg: error") and "no_such_db" in out and "tries" not in out
