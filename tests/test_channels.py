"""Notification channels checked before they are needed: a URL Apprise cannot use makes its job
invalid when the jobs file is read (the other jobs run), `functions.notify --test` reaches each
channel, and a notification that fails at send time is kept with its job for the report."""

import json

import pytest
from werkzeug import Response

from functions import notify as notify_fn
from functions import report as report_fn
from functions import scrape as scrape_fn


@pytest.fixture
def site(httpserver):
    state = {"hooks": [], "body": "<p>one</p>"}

    def hook(request):
        state["hooks"].append(json.loads(request.get_data()))
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    httpserver.expect_request("/page").respond_with_handler(lambda r: Response(state["body"], content_type="text/html"))
    state["hook"] = f"json://127.0.0.1:{httpserver.port}/hook"
    state["page"] = httpserver.url_for("/page")
    return state


def test_a_notify_url_apprise_cannot_use_makes_its_job_invalid_and_the_others_run(database_url, site, jobs_file,
                                                                                  monkeypatch, capsys):
    monkeypatch.setenv("SLACK_TOKEN", "xoxb-secret-4455")
    path = jobs_file(f'[[scrape]]\nname = "typo"\nurl = "{site["page"]}"\nnotify = ["slak://${{SLACK_TOKEN}}/x"]\n\n'
                     f'[[scrape]]\nname = "good"\nurl = "{site["page"]}"\nnotify = ["{site["hook"]}"]\n')
    assert scrape_fn.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "good: new\n"
    assert err == (f"error: {path}: [[scrape]] job 'typo': key 'notify': slak:// is not a notification service"
                   " Apprise can use (see its list of services and URL forms)\n")
    assert "xoxb" not in err


def test_a_bad_notify_urls_default_names_the_variable(database_url, site, jobs_file, monkeypatch, capsys):
    monkeypatch.setenv("NOTIFY_URLS", "garbage")
    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{site["page"]}"\n')
    assert scrape_fn.main([]) == 2
    assert "job 'a': NOTIFY_URLS (its default channels): ?:// is not a notification service" in capsys.readouterr().err


def test_notify_test_sends_one_message_per_distinct_channel(site, jobs_file, monkeypatch, capsys):
    monkeypatch.setenv("NOTIFY_URLS", site["hook"])
    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{site["page"]}"\n\n'
              f'[[scrape]]\nname = "b"\nurl = "{site["page"]}"\nnotify = ["{site["hook"]}"]\n\n'
              f'[[scrape]]\nname = "dead"\nurl = "{site["page"]}"\nnotify = ["json://127.0.0.1:1/nowhere"]\n')
    assert notify_fn.main(["--test"]) == 1  # one channel did not take it
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["json://127.0.0.1: sent (a, b)", "json://127.0.0.1: not delivered (see log) (dead)"]
    assert [hook["title"] for hook in site["hooks"]] == ["Test message"]
    assert notify_fn.main(["--test", "--job", "a"]) == 0
    assert capsys.readouterr().out == "json://127.0.0.1: sent (a)\n"


def test_a_notification_that_fails_at_send_time_is_shown_in_the_report(database_url, site, jobs_file, capsys):
    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{site["page"]}"\nnotify = ["json://127.0.0.1:1/nowhere"]\n')
    assert scrape_fn.main([]) == 0
    site["body"] = "<p>two</p>"
    assert scrape_fn.main([]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("a: changed (notification failed: json://127.0.0.1")
    assert report_fn.main([]) == 0
    report = capsys.readouterr().out
    assert any(row.startswith("  notify   scrape   a: a notification failed ") and "json://127.0.0.1" in row
               for row in report.splitlines()), report
