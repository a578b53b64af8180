"""What a command prints: each result once, JSON objects with LOG_FORMAT=json whatever a page's
error holds, the project's own decisions at LOG_LEVEL=DEBUG without secrets, and a quiet end
when stdout is closed early."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from werkzeug import Response

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pages(httpserver, tmp_path, database_url):
    httpserver.expect_request("/ok").respond_with_handler(
        lambda r: Response("<p>ok</p>", content_type="text/html", headers={"ETag": '"v1"'})
        if r.headers.get("If-None-Match") != '"v1"' else Response(status=304))
    httpserver.expect_request("/bad").respond_with_data('"quoted" \\ {json} \x1b[2J', status=500)
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[[scrape]]\nname = "ok"\nurl = "{httpserver.url_for("/ok")}?key=${{PAGE_KEY}}"\n\n'
                    f'[[scrape]]\nname = "bad"\nurl = "{httpserver.url_for("/bad")}"\n')
    env = {**os.environ, "JOBS_FILE": str(jobs), "DATABASE_URL": database_url, "PAGE_KEY": "pk-secret-8812"}
    env.pop("JOBS_TOML", None)
    return env


def scrape(env: dict, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "functions.scrape"], cwd=ROOT, env={**env, **extra},
                          capture_output=True, text=True, timeout=120)


def test_each_result_is_printed_once(pages):
    done = scrape(pages)
    assert done.returncode == 1
    assert done.stdout == "ok: new\nbad: error: HTTP 500 INTERNAL SERVER ERROR\n"
    assert "bad" not in done.stderr  # no WARNING repeating the result line


def test_json_result_lines_are_objects_whatever_the_error_holds(pages):
    done = scrape(pages, LOG_FORMAT="json")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["job"], r["outcome"]) for r in records] == [("ok", "new"), ("bad", "error")]
    assert records[1]["line"] == "bad: error: HTTP 500 INTERNAL SERVER ERROR"


def test_debug_shows_the_projects_decisions_without_secrets(pages):
    first = scrape(pages, LOG_LEVEL="DEBUG")
    done = scrape(pages, LOG_LEVEL="DEBUG")
    assert done.returncode == 1
    assert "ok: filters took" in first.stderr
    for decision in ("ok: conditional request (If-None-Match)", "ok: 304 Not Modified", "wrote a batch of"):
        assert decision in done.stderr, decision
    assert "pk-secret-8812" not in first.stderr + first.stdout + done.stderr + done.stdout


def test_a_closed_stdout_ends_a_command_quietly(pages):
    process = subprocess.Popen([sys.executable, "-m", "functions.report", "--html", "-"], cwd=ROOT, env=pages,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first byte, as `| head -0` does
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0 and err == b"", err
