"""Nothing fails silently (shared/app/monitor.py): heartbeats to a loopback Healthchecks-style
server, run-level alerts and recoveries to a loopback webhook, overdue jobs of another kind."""

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from functions import carto_refresh as refresh_fn
from functions import scrape as scrape_fn
from shared.app import monitor
from shared.notify import heartbeat
from tests.loopback import GIVE_UP, Site, trickle

CHECK = "0f1e2d3c-aaaa-bbbb-cccc-5a6b7c8d9e0f"  # the heartbeat's key: a secret


@pytest.fixture
def services(httpserver, monkeypatch):
    """A page, a heartbeat service and a JSON webhook, all on one loopback server."""
    state = {"pings": [], "hooks": [], "page": 200}

    def ping(request):
        key = CHECK if CHECK in request.path else "xyz-secret-9"
        state["pings"].append((request.path.rsplit(key, 1)[1] or "/", request.get_data(as_text=True)))
        return Response("OK")

    def hook(request):
        state["hooks"].append(json.loads(request.get_data()))
        return Response("{}", content_type="application/json")

    httpserver.expect_request(f"/ping/{CHECK}").respond_with_handler(ping)
    httpserver.expect_request(f"/ping/{CHECK}/start").respond_with_handler(ping)
    httpserver.expect_request(f"/ping/{CHECK}/fail").respond_with_handler(ping)
    httpserver.expect_request("/job-ping/xyz-secret-9").respond_with_handler(ping)
    httpserver.expect_request("/job-ping/xyz-secret-9/fail").respond_with_handler(ping)
    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    httpserver.expect_request("/page").respond_with_handler(
        lambda r: Response("<p>page</p>", status=state["page"], content_type="text/html"))
    monkeypatch.setenv("HEARTBEAT_URL", httpserver.url_for(f"/ping/{CHECK}"))
    monkeypatch.setenv("NOTIFY_URLS", f"json://127.0.0.1:{httpserver.port}/hook")
    state["page_url"] = httpserver.url_for("/page")
    return state


def titles(state) -> list[str]:
    return [hook["title"] for hook in state["hooks"]]


def test_a_good_run_pings_start_then_success_with_its_result_lines(database_url, services, jobs_file, capsys,
                                                                   caplog):
    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{services["page_url"]}"\n')
    assert scrape_fn.main([]) == 0
    assert services["pings"] == [("/start", ""), ("/", "a: new")]
    out, err = capsys.readouterr()
    assert CHECK not in out + err + caplog.text and "0f1e2d3c" not in out + err + caplog.text


def test_a_failed_job_pings_fail_with_the_reason(database_url, services, jobs_file, capsys):
    services["page"] = 500
    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{services["page_url"]}"\n')
    assert scrape_fn.main([]) == 1
    assert services["pings"] == [("/start", ""), ("/fail", "a: error: HTTP 500 INTERNAL SERVER ERROR")]


def test_a_run_that_fails_on_its_jobs_file_pings_fail_and_alerts_once_then_recovers(database_url, services, jobs_file,
                                                                                   capsys):
    path = jobs_file('[[scrape]\nname = "a"\n')  # not TOML
    for _ in range(3):
        assert scrape_fn.main([]) == 2
    assert [signal for signal, _ in services["pings"]] == ["/start", "/fail"] * 3
    assert services["pings"][1][1].startswith(f"error: {path}: not valid TOML")
    assert titles(services) == ["scrape runs are failing"]  # one alert for the streak, not three
    message = services["hooks"][0]["message"]
    assert "Cause: " in message and "not valid TOML" in message and "What to do: fix what the cause names" in message

    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{services["page_url"]}"\n')
    assert scrape_fn.main([]) == 0
    assert scrape_fn.main([]) == 0
    assert titles(services) == ["scrape runs are failing", "scrape runs work again"]  # one recovery
    assert "after 3 failed runs" in services["hooks"][1]["message"]


def test_a_run_whose_database_is_gone_pings_fail_and_alerts_by_the_hourly_rule(services, jobs_file, monkeypatch,
                                                                               capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:db-pass-77@127.0.0.1:1/db")
    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{services["page_url"]}"\nevery = "1d"\n')
    assert scrape_fn.main(["--every", "1d"]) == 1  # a daily run: not frequent, so it alerts every time
    assert [signal for signal, _ in services["pings"]] == ["/start", "/fail"]
    assert services["pings"][1][1].startswith("error: cannot connect to postgresql://u@127.0.0.1:1/db")
    assert titles(services) == ["scrape runs are failing"]
    assert "check DATABASE_URL" in services["hooks"][0]["message"]
    assert "db-pass-77" not in json.dumps(services)


def test_a_job_heartbeat_is_pinged_for_that_job_alone_and_stays_secret(database_url, services, jobs_file,
                                                                       monkeypatch, capsys):
    monkeypatch.setenv("JOB_PING", f"http://127.0.0.1:{services_port(services)}/job-ping/xyz-secret-9")
    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{services["page_url"]}"\nheartbeat = "${{JOB_PING}}"\n\n'
              f'[[scrape]]\nname = "b"\nurl = "{services["page_url"]}"\n')
    assert scrape_fn.main([]) == 0
    # The run's heartbeat, and a's own: [start, a's success, the run's success].
    assert services["pings"] == [("/start", ""), ("/", "a: new"), ("/", "a: new\nb: new")]
    out, err = capsys.readouterr()
    assert "xyz-secret-9" not in out + err


def services_port(services) -> int:
    return int(services["page_url"].split(":")[2].split("/")[0])


def test_an_overdue_job_of_another_kind_is_alerted_once_by_a_scrape_run_and_recovers(database_url, db, services,
                                                                                    jobs_file, capsys):
    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{services["page_url"]}"\n\n'
              '[[refresh]]\nname = "nightly"\nmode = "postgres"\nsql = "SELECT 1"\nevery = "1h"\n')
    assert scrape_fn.main([]) == 0  # the schema, and both jobs known from now
    assert titles(services) == []
    # The hourly refresh last ran three hours ago: its scheduler entry stopped.
    hours_ago = datetime.now(timezone.utc) - timedelta(hours=3)
    db.run("INSERT INTO refresh_jobs (name) VALUES ('nightly')")
    db.run("INSERT INTO refresh_runs (job_id, started_at, ended_at, outcome) SELECT id, :t, :t, 'ok'"
           " FROM refresh_jobs WHERE name = 'nightly'", t=hours_ago)
    assert scrape_fn.main([]) == 0
    assert scrape_fn.main([]) == 0
    assert titles(services) == ["nightly is overdue"]  # once for the stretch
    message = services["hooks"][0]["message"]
    assert "nightly ([[refresh]], Every hour at :00) is overdue: it last ran" in message
    assert "its scheduler entry stopped" in message
    assert refresh_fn.main([]) == 0  # it runs again
    assert scrape_fn.main([]) == 0
    assert titles(services) == ["nightly is overdue", "nightly runs again"]


def test_a_job_that_never_ran_is_overdue_once_twice_its_interval_after_it_appeared(database_url, db, services,
                                                                                   jobs_file, capsys):
    jobs_file(f'[[scrape]]\nname = "a"\nurl = "{services["page_url"]}"\n\n'
              f'[[scrape]]\nname = "hourly"\nurl = "{services["page_url"]}"\nevery = "1h"\n')
    assert scrape_fn.main(["--every", "10m"]) == 0  # the 10-minute entry exists; the hourly one not yet
    db.run("UPDATE job_watch SET first_seen = now() - interval '3 hours' WHERE name = 'hourly'")
    assert scrape_fn.main(["--every", "10m"]) == 0
    assert titles(services) == ["hourly is overdue"]
    assert "no scheduler entry runs it yet: on Heroku, run `make heroku-schedule`" in services["hooks"][0]["message"]


def test_the_overdue_limit_is_twice_the_interval_and_a_bounded_margin():
    assert monitor.overdue_limit(600) == timedelta(minutes=25)
    assert monitor.overdue_limit(3600) == timedelta(hours=2, minutes=30)
    assert monitor.overdue_limit(86400) == timedelta(days=2, minutes=30)


def test_a_heartbeat_service_that_trickles_costs_the_time_left_not_more():
    """A ping's time bounds its whole exchange: a service sending its headers a byte at a time
    (each well within the read timeout) is given up at the run's deadline."""
    site = Site()
    site.answers["hb"] = lambda conn, target: (conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: "),
                                               trickle(conn, b"a" * 60_000))
    try:
        started = time.monotonic()
        assert heartbeat.ping(site.url("hb"), heartbeat.START, deadline=started + 3) is False
        assert time.monotonic() - started < GIVE_UP  # the trickle goes on for 20 s, then answers 200
    finally:
        site.close()
