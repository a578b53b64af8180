"""The Outbox (shared/notify/outbox.py) against real servers on loopback: an SMTP server
(aiosmtpd), a JSON webhook that answers slowly (a ThreadingHTTPServer: one thread per request,
so a slow answer holds no other back), and raw sockets that accept and never answer, or trickle.
Also: secrets redacted before the diff is trimmed, and in Apprise's own log records."""

import email
import email.policy
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from shared.core import log
from shared.notify import messages, outbox
from shared.notify.outbox import NOT_SENT, Outbox
from shared.scrape.job import ScrapeJob

ROOT = Path(__file__).resolve().parent.parent
AT = "2026-11-22T10:00:00+00:00"
CHANGED = messages.Check("changed", AT, body="Item 1: budget\nItem 2: parks and libraries",
                       previous_body="Item 1: budget\nItem 2: parks")
FAILING = messages.Check("error", AT, error="HTTP 503", streak_before=2, streak=3)


def job(name: str, *urls: str) -> ScrapeJob:
    return ScrapeJob(name=name, url=f"https://example.org/{name}", notify=urls)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def windows(secret: str, size: int = 5) -> list[str]:
    """Every piece of `secret` of `size` characters: none may show."""
    return [secret[i:i + size] for i in range(len(secret) - size + 1)]


# --- servers ------------------------------------------------------------------------------------

class Webhook:
    """A JSON webhook answering each POST after `delay` seconds with `status` and `answer`,
    keeping what it was sent and the most requests it had in flight at once."""

    def __init__(self, delay: float = 0.0, status: int = 200, answer: bytes = b"ok"):
        self.delay, self.status, self.answer = delay, status, answer
        self.received: list[dict] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                with hook.lock:
                    hook.in_flight += 1
                    hook.most_in_flight = max(hook.most_in_flight, hook.in_flight)
                try:
                    body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    time.sleep(hook.delay)
                    with hook.lock:
                        hook.received.append(json.loads(body))
                finally:
                    # Counted out before the answer leaves: a sender that has its answer may send
                    # again at once, and must not be counted twice.
                    with hook.lock:
                        hook.in_flight -= 1
                self.send_response(hook.status)
                self.send_header("Content-Length", str(len(hook.answer)))
                self.end_headers()
                self.wfile.write(hook.answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 128
        self.port = self.server.server_address[1]
        self.url = f"json://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """Accepts connections and never answers a whole line: nothing at all, or (trickle) one byte
    every `trickle` seconds, so that no socket read ever times out."""

    def __init__(self, trickle: float | None = None):
        self.trickle = trickle
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            if self.trickle:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        while not self.closed.wait(self.trickle):
            try:
                conn.sendall(b"2")
            except OSError:
                return

    def close(self):
        self.closed.set()
        self.sock.close()
        for conn in self.connections:
            conn.close()


class Mailbox:
    """aiosmtpd handler keeping (subject, text) of every message it receives."""

    def __init__(self):
        self.messages: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((message["Subject"],
                              message.get_body(("plain",)).get_content().replace("\r\n", "\n")))
        return "250 OK"


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    mailbox.url = f"mailto://127.0.0.1:{controller.port}?from=watcher@example.org&to=owner@example.org"
    yield mailbox
    controller.stop()


@pytest.fixture
def servers():
    """Makes servers for a test and closes them after it."""
    made = []

    def make(kind, **options):
        made.append(kind(**options))
        return made[-1]

    yield make
    for server in made:
        server.close()


# --- delivery -----------------------------------------------------------------------------------

def test_messages_reach_smtp_and_a_webhook(smtp, servers):
    hook = servers(Webhook)
    with Outbox(time.monotonic() + 60) as box:
        box.post(job("agenda", smtp.url, hook.url), CHANGED)
        box.post(job("minutes", hook.url), FAILING)
        box.post(job("quiet", hook.url), messages.Check("unchanged", AT, body="same"))  # calls for nothing
        assert box.close() == {}

    expected_diff = "@@ -1,2 +1,2 @@\n Item 1: budget\n-Item 2: parks\n+Item 2: parks and libraries"
    [(subject, text)] = smtp.messages
    assert subject == "agenda changed" and expected_diff in text and "https://example.org/agenda" in text
    by_title = {m["title"]: m for m in hook.received}
    assert set(by_title) == {"agenda changed", "minutes is failing"}
    assert expected_diff in by_title["agenda changed"]["message"]
    assert "the last 3 checks failed" in by_title["minutes is failing"]["message"]
    assert by_title["minutes is failing"]["type"] == "failure"


def test_500_changes_to_a_slow_webhook_take_seconds_not_a_minute(servers):
    """A serial sender needs 500 x 100 ms = 50 s at the very least; the outbox sends
    WORKERS at a time, and never more."""
    hook = servers(Webhook, delay=0.1)
    jobs = [job(f"page-{i}", hook.url) for i in range(500)]
    started = time.monotonic()
    with Outbox(started + 120) as box:
        for each in jobs:
            box.post(each, CHANGED)
        notices = box.close()
    elapsed = time.monotonic() - started
    assert notices == {}
    assert len(hook.received) == 500
    assert elapsed < 20, f"{elapsed:.1f} s"
    assert 1 < hook.most_in_flight <= outbox.WORKERS


@pytest.mark.parametrize("scheme", ["mailto", "json"])
def test_a_server_that_never_answers_does_not_keep_close_past_the_deadline(servers, scheme):
    silent = servers(Silent)
    url = (f"mailto://watcher:Hx8pass9Word@127.0.0.1:{silent.port}?from=w@example.org&to=o@example.org"
           if scheme == "mailto" else f"json://watcher:Hx8pass9Word@127.0.0.1:{silent.port}/hook")
    jobs = [job(f"page-{i}", url) for i in range(20)]
    started = time.monotonic()
    deadline = started + 3
    with Outbox(deadline) as box:
        for each in jobs:
            box.post(each, CHANGED)
        notices = box.close()
    assert time.monotonic() - started < 10
    assert silent.connections  # it was tried
    assert set(notices) == {each.name for each in jobs}
    for notice in notices.values():
        assert notice.startswith(f"notification failed: {scheme}://127.0.0.1: ") or notice == NOT_SENT, notice
        assert "Hx8pass9Word" not in notice


def test_a_server_that_trickles_is_abandoned_at_the_message_timeout(servers):
    """Each read gets a byte in time, so socket timeouts never fire: the outbox stops waiting
    at the message's timeout, leaves the daemon thread behind, and tries that URL no more."""
    trickler = servers(Silent, trickle=0.2)
    url = f"mailto://127.0.0.1:{trickler.port}?from=w@example.org&to=o@example.org"
    started = time.monotonic()
    with Outbox(None, workers=1, timeout=2) as box:
        box.post(job("first", url), CHANGED)
        box.post(job("second", url), CHANGED)
        notices = box.close()
    assert time.monotonic() - started < 10
    assert notices == {"first": "notification failed: mailto://127.0.0.1: no answer within 2 s",
                       "second": "notification failed: mailto://127.0.0.1: not tried, it did not answer in time"
                                 " earlier in this run"}
    abandoned = [t for t in threading.enumerate() if t.name == "notify-send"]
    assert abandoned and all(t.daemon for t in abandoned)


def test_messages_that_cannot_start_before_the_deadline_are_not_sent(servers):
    hook = servers(Webhook)
    with Outbox(time.monotonic() + 1.2) as box:  # under CLOSE_MARGIN + SEND_MARGIN + MIN_SEND_TIME
        box.post(job("agenda", hook.url), CHANGED)
        assert box.close() == {"agenda": NOT_SENT}
    assert hook.received == []


def test_a_failed_notification_is_a_notice_without_secrets(servers):
    closed = free_port()
    hook = servers(Webhook, status=500)
    urls = (f"mailto://watcher:Sm7pSecretPass@127.0.0.1:{closed}?from=w@example.org&to=o@example.org",
            f"{hook.url}/Tk9HookSecret55",
            "slack://T1JJ3T3L2Q9/only")  # a token where the host would be, and not a valid Slack URL
    with Outbox(time.monotonic() + 60) as box:
        box.post(job("agenda", *urls), CHANGED)
        box.post(job("minutes", hook.url), CHANGED)
        notices = box.close()
    assert notices == {
        "agenda": "notification failed: mailto://127.0.0.1: not delivered (see log); "
                  "json://127.0.0.1: not delivered (see log); slack://: not a valid Apprise URL",
        "minutes": "notification failed: json://127.0.0.1: not delivered (see log)"}
    assert len(hook.received) == 2  # it was sent; the webhook said no


def test_nothing_to_send_starts_no_thread_and_close_is_final():
    box = Outbox(time.monotonic() + 60)
    box.post(job("agenda", "json://127.0.0.1:1/hook"), messages.Check("new", AT, body="first"))
    assert box.close() == {} and box.close() == {}
    assert not box._threads
    with pytest.raises(RuntimeError):
        box.post(job("agenda"), CHANGED)


# --- secrets ------------------------------------------------------------------------------------

def test_a_secret_is_redacted_before_the_diff_is_trimmed():
    """A multi-line secret (a key brought in by ${VAR}, echoed by the page) is longer than the
    diff may be: cut by the trimming, its first lines would no longer match it."""
    key = "\n".join(f"MIIEv{i:03d}QIBADANBgkqhkiG9w0BAQEFAASC{i:03d}" for i in range(100))
    log.add_secret(key)  # as shared/app/config.py does for what ${VAR} brings in
    page = "Agenda\nItem 1: budget"
    [message] = messages.messages_for(job("agenda"), messages.Check("changed", AT, body=f"{page}\n{key}",
                                                                previous_body=page))
    assert "+***" in message.body
    for line in key.splitlines():
        assert line not in message.body
    assert "MIIEv" not in message.body


def test_url_encoded_secrets_are_registered():
    password = "Zq9+wX/7yT=uV3kL"
    messages.register_secrets("json://watcher:Zq9%2BwX%2F7yT%3DuV3kL@hooks.example.org/p/Tk7+Query9/x?t=Ab3%2BCd4%2Fef")
    for form in (password, "Zq9%2BwX%2F7yT%3DuV3kL", "Zq9%2BwX/7yT%3DuV3kL", "Ab3+Cd4/ef", "Ab3%2BCd4%2Fef"):
        assert log.redact(f"[{form}]") == "[***]", form
    assert log.redact("hooks.example.org") == "hooks.example.org"


def _leaks(text: str, secrets: list[str]) -> list[str]:
    found = [piece for secret in secrets for piece in windows(secret) if piece in text]
    masks = [f"{s[0]}...{s[-1]}" for s in secrets] + [f"...{s[-4:]}" for s in secrets]
    return found + [mask for mask in masks if mask in text]


SECRETS = ["Zq9+wX/7yT=uV3kL", "Tk9HookSecret55", "Gq7Vb2Kp9Wz4"]


def _secret_urls(port: int) -> list[str]:
    return [f"json://watcher:Zq9%2BwX%2F7yT%3DuV3kL@127.0.0.1:{port}/hook/Tk9HookSecret55",
            f"gotify://127.0.0.1:{port}/Gq7Vb2Kp9Wz4"]


def _echoing_hook(servers) -> Webhook:
    """Refuses everything, quoting the token in an answer Apprise cuts at 2,000 bytes, inside it."""
    return servers(Webhook, status=500, answer=b"a " * 997 + b"Tk9HookSecret55 is not a known hook")


def test_apprise_records_are_redacted_where_they_are_made(servers):
    """At every level, TRACE included: the record as any handler gets it (ours, or Apprise's
    capture of a call's logs) holds no piece of a secret, neither %-encoded, nor cut where
    Apprise trims an answer, nor masked Apprise's way (`G...4`)."""
    hook = _echoing_hook(servers)
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    apprise_logger, keep = logging.getLogger("apprise"), Keep(level=1)
    level = apprise_logger.level
    apprise_logger.setLevel(1)
    apprise_logger.addHandler(keep)
    try:
        for url in _secret_urls(hook.port):
            messages.register_secrets(url)
            assert messages.deliver(url, messages.Message("t", "b"), 5) is not None
    finally:
        apprise_logger.removeHandler(keep)
        apprise_logger.setLevel(level)
    text = "\n".join(records)
    assert "Response Details" in text and "[cut]" in text  # the cut answer was logged, its last word dropped
    assert "Loaded Gotify URL" in text
    assert _leaks(text, SECRETS) == []


def test_apprise_logs_through_our_redacting_handler(servers):
    """In a process set up as the commands are (LOG_LEVEL=DEBUG): Apprise prints nothing of its
    own, its records come out through our handler, and no piece of a secret shows."""
    hook = _echoing_hook(servers)
    script = textwrap.dedent(f"""
        import time
        from shared.core import log
        from shared.notify import messages
        from shared.notify.outbox import Outbox
        from shared.scrape.job import ScrapeJob

        log.setup()
        urls = {_secret_urls(hook.port)!r}
        with Outbox(time.monotonic() + 30) as box:
            box.post(ScrapeJob(name="agenda", url="https://example.org/a", notify=tuple(urls)),
                     messages.Check("changed", "now", body="b", previous_body="a"))
            notices = box.close()
        assert set(notices) == {{"agenda"}}, notices
    """)
    env = {**os.environ, "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "text", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""
    assert " WARNING apprise: Failed to send JSON POST notification" in done.stderr
    assert " DEBUG apprise: Loaded Gotify URL: gotify://127.0.0.1" in done.stderr
    assert "Response Details" in done.stderr
    assert _leaks(done.stderr, SECRETS) == []
