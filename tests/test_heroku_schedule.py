"""Heroku Scheduler entries select their jobs by schedule (`--every`, `--at`), never by name: a
job added to the file on a schedule that has an entry runs from that entry."""

import shlex

import pytest
from werkzeug import Response

from devtools import heroku_schedule
from functions import scrape as scrape_fn
from shared.app import config


@pytest.fixture
def site(httpserver):
    for name in ("a", "b", "hourly", "late"):
        httpserver.expect_request(f"/{name}").respond_with_handler(lambda r, name=name: Response(f"<p>{name}</p>"))
    return httpserver


def entry_commands(capsys) -> dict[str, list[str]]:
    assert heroku_schedule.main() == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if "python -m functions." in line]
    return {line.split("  ")[0]: shlex.split(line.split("python -m functions.scrape", 1)[1]) for line in lines}


def test_a_job_added_on_an_existing_schedule_runs_from_the_existing_entry(database_url, site, jobs_file, capsys):
    jobs = (f'[[scrape]]\nname = "a"\nurl = "{site.url_for("/a")}"\n\n'
            f'[[scrape]]\nname = "hourly"\nurl = "{site.url_for("/hourly")}"\nevery = "1h"\nat = ":20"\n')
    jobs_file(jobs)
    entries = entry_commands(capsys)
    assert entries == {"Every 10 minutes": ["--every", "10m"], "Every hour at :20": ["--every", "1h", "--at", ":20"]}

    jobs_file(jobs + f'\n[[scrape]]\nname = "b"\nurl = "{site.url_for("/b")}"\n')  # added later, every 10m
    assert scrape_fn.main(entries["Every 10 minutes"]) == 0
    assert capsys.readouterr().out == "a: new\nb: new\n"  # the existing entry runs it, and not the hourly job
    assert scrape_fn.main(entries["Every hour at :20"]) == 0
    assert capsys.readouterr().out == "hourly: new\n"
    assert entry_commands(capsys) == entries  # no new entry is needed


def test_a_schedule_no_job_has_runs_nothing_and_says_so(database_url, site, jobs_file, capsys):
    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{site.url_for("/a")}"\n')
    assert scrape_fn.main(["--every", "1d", "--at", "06:00"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == "nothing to run: no [[scrape]] job on that schedule\n"


@pytest.mark.parametrize("argv, says", [(["--every", "5m"], "--every/--at: 'every' must be one of"),
                                        (["--every", "1d", "--at", "25:00"], "--every/--at: 'at' must be HH:MM")])
def test_a_schedule_that_cannot_be_is_one_line(database_url, jobs_file, capsys, argv, says):
    jobs_file('[[scrape]]\nname = "a"\nurl = "http://127.0.0.1:1/"\n')
    assert scrape_fn.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + says) and err.count("\n") == 1, err


def test_every_command_of_the_example_file_selects_by_schedule():
    from pathlib import Path

    schedules = config.schedules(Path(__file__).resolve().parent.parent / "jobs.example.toml")
    for _, command in heroku_schedule.entries(schedules, "jobs.example.toml"):
        assert " --every " in command and "--job" not in command
