"""Notifications delivered for real: an SMTP server (aiosmtpd) and a JSON webhook on loopback."""

import email
import email.policy
import json
import socket
import threading

import pytest
from aiosmtpd.controller import Controller
from werkzeug import Response

from functions import scrape as scrape_fn
from shared.notify import messages


class Mailbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 OK"

    def texts(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(m["Subject"], m.get_body(("plain",)).get_content().replace("\r\n", "\n")) for m in self.messages]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    mailbox.url = (f"mailto://127.0.0.1:{controller.port}"
                   f"?from=watcher@example.org&to=owner@example.org&name=Watcher")
    yield mailbox
    controller.stop()


@pytest.fixture
def site(httpserver):
    """A page the test edits (with a fresh token per request) and a webhook that keeps what it is sent."""
    state = {"items": ["Item 1: budget", "Item 2: parks"], "status": 200, "hooks": []}

    def page(request):
        items = "".join(f"<li>{item}</li>" for item in state["items"])
        token = socket.gethostname() + str(id(request))
        return Response(f"<html><body><input name=csrf value={token}><ul id=agenda>{items}</ul></body></html>",
                        status=state["status"], content_type="text/html")

    def hook(request):
        state["hooks"].append(json.loads(request.get_data()))
        return Response("ok")

    httpserver.expect_request("/agenda").respond_with_handler(page)
    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    state["url"] = httpserver.url_for("/agenda")
    state["hook_url"] = f"json://127.0.0.1:{httpserver.port}/hook"
    return state


def write_jobs(tmp_path, monkeypatch, text):
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    monkeypatch.setenv("JOBS_FILE", str(path))


def run_cli(capsys):
    code = scrape_fn.main([])
    return code, capsys.readouterr().out


def hooks(site) -> list[tuple[str, str]]:
    return [(h["title"], h["message"]) for h in site["hooks"]]


def test_a_change_reaches_smtp_and_webhook_with_the_diff(database_url, smtp, site, tmp_path, monkeypatch, capsys):
    write_jobs(tmp_path, monkeypatch, f"""
[[scrape]]
name = "agenda"
url = "{site["url"]}"
select = ["#agenda"]
notify = ["{smtp.url}", "{site["hook_url"]}"]
""")
    assert run_cli(capsys) == (0, "agenda: new\n")
    assert run_cli(capsys) == (0, "agenda: unchanged\n")
    assert smtp.texts() == [] and site["hooks"] == []  # never on the first check, nor when unchanged

    site["items"] = ["Item 1: budget", "Item 2: parks and libraries", "Item 3: roads"]
    assert run_cli(capsys) == (0, "agenda: changed\n")

    expected_diff = "\n".join([
        "--- before", "+++ after", "@@ -1,2 +1,3 @@", " Item 1: budget",
        "-Item 2: parks", "+Item 2: parks and libraries", "+Item 3: roads"])
    [(subject, text)] = smtp.texts()
    [(title, message)] = hooks(site)
    assert subject == title == "agenda changed"
    for body in (text, message):
        assert body.startswith("agenda changed (")
        assert site["url"] in body
        assert expected_diff in body


def test_global_urls_and_silenced_jobs(database_url, site, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NOTIFY_URLS", f" {site['hook_url']}, ")
    write_jobs(tmp_path, monkeypatch, f"""
[[scrape]]
name = "loud"
url = "{site["url"]}"
select = "#agenda"

[[scrape]]
name = "quiet"
url = "{site["url"]}"
select = "#agenda"
notify = []
""")
    run_cli(capsys)
    site["items"] = ["Item 1: budget cut"]
    assert run_cli(capsys) == (0, "loud: changed\nquiet: changed\n")
    assert [title for title, _ in hooks(site)] == ["loud changed"]


def test_one_alert_after_three_failures_and_one_recovery(database_url, smtp, site, tmp_path, monkeypatch, capsys):
    write_jobs(tmp_path, monkeypatch, f"""
[[scrape]]
name = "agenda"
url = "{site["url"]}"
select = ["#agenda"]
notify = ["{smtp.url}", "{site["hook_url"]}"]
""")
    run_cli(capsys)
    site["status"] = 503
    for run in range(1, 7):
        assert run_cli(capsys) == (1, "agenda: error: HTTP 503 SERVICE UNAVAILABLE\n")
        expected = 0 if run < 3 else 1
        assert (len(smtp.texts()), len(site["hooks"])) == (expected, expected), f"after failure {run}"
    [(title, message)] = hooks(site)
    assert title == "agenda is failing"
    assert "the last 3 checks failed" in message and "Last error: HTTP 503" in message
    assert smtp.texts()[0][0] == "agenda is failing"

    site["status"] = 200
    assert run_cli(capsys) == (0, "agenda: unchanged\n")
    assert run_cli(capsys) == (0, "agenda: unchanged\n")
    assert [t for t, _ in hooks(site)] == ["agenda is failing", "agenda recovered"]
    assert [s for s, _ in smtp.texts()] == ["agenda is failing", "agenda recovered"]
    assert "recovered after 6 failed checks" in hooks(site)[1][1]


def test_a_retried_run_does_not_alert_twice(database_url, db, site, tmp_path, monkeypatch, capsys):
    """Lambda may deliver one scheduled event twice: the same run key is one failure, one alert."""
    write_jobs(tmp_path, monkeypatch, f"""
[[scrape]]
name = "agenda"
url = "{site["url"]}"
alert_after = 2
notify = ["{site["hook_url"]}"]
""")
    site["status"] = 500
    for key in ("run-1", "run-2", "run-2", "run-2"):
        assert scrape_fn.main(["--run-key", key]) == 1
    assert [t for t, _ in hooks(site)] == ["agenda is failing"]
    assert db.run("SELECT error_streak FROM scrape_targets")[0][0] == 2
    assert db.run("SELECT count(*) FROM scrape_errors")[0][0] == 2  # the retries are not new failures


def test_a_failed_notification_is_reported_and_loses_no_check(database_url, db, site, tmp_path, monkeypatch, capsys):
    closed = free_port()
    write_jobs(tmp_path, monkeypatch, f"""
[[scrape]]
name = "agenda"
url = "{site["url"]}"
select = ["#agenda"]
notify = ["mailto://watcher:s3cret-pass@127.0.0.1:{closed}?from=w@example.org&to=o@example.org",
          "{site["hook_url"]}"]
""")
    run_cli(capsys)
    site["items"] = ["Item 1: new budget"]
    code, out = scrape_fn.main([]), capsys.readouterr()
    assert code == 0
    assert out.out == "agenda: changed (notification failed: mailto://127.0.0.1: not delivered (see log))\n"
    assert "s3cret-pass" not in out.out + out.err
    assert [t for t, _ in hooks(site)] == ["agenda changed"]  # the other service still got it
    assert db.run("SELECT count(*) FROM scrape_contents")[0][0] == 2


def test_editing_the_filters_is_not_a_change_of_page(database_url, site, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NOTIFY_URLS", site["hook_url"])
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "agenda"\nurl = "{site["url"]}"\nselect = "#agenda"\n')
    run_cli(capsys)
    write_jobs(tmp_path, monkeypatch, f'[[scrape]]\nname = "agenda"\nurl = "{site["url"]}"\nselect = "li"\n'
                                      f'ignore = "Item \\\\d: "\n')
    assert run_cli(capsys) == (0, "agenda: changed (not notified: filters edited)\n")  # stored as a new content...
    assert site["hooks"] == []  # ...but nobody is told: the page did not change
    site["items"] = ["Item 1: budget", "Item 2: parks", "Item 3: roads"]
    assert run_cli(capsys) == (0, "agenda: changed\n")
    [(_, message)] = hooks(site)
    assert "@@ -1,2 +1,3 @@\n budget\n parks\n+roads" in message


def test_long_diffs_are_trimmed():
    before = "\n".join(f"line {i}" for i in range(1000))
    after = "\n".join(f"line {i} edited" for i in range(1000))
    diff = messages.unified_diff(before, after, "agenda")
    lines = diff.splitlines()
    assert len(diff) <= messages.MAX_DIFF_CHARS + 200 and len(lines) <= messages.MAX_DIFF_LINES + 4
    removed = [line for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line for line in lines if line.startswith("+") and not line.startswith("+++")]
    assert removed and added and abs(len(removed) - len(added)) <= 1  # both sides, balanced
    shown = len(lines) - 1
    assert lines[-1] == (f"... {2003 - shown} more diff lines not shown: python -m functions.history diff agenda")


def test_notification_secrets_never_reach_the_log(monkeypatch):
    from shared.core import log

    monkeypatch.setenv("NOTIFY_URLS", "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234567890")
    messages.global_urls()
    assert "AAHdqTcv" not in log.redact("sending to tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/x")
