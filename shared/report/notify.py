"""Notifications for every job kind: a message when a page's content changes, one alert when a
job keeps failing, one message when it recovers.

Messages go to Apprise URLs (email over SMTP, Amazon SES and SNS, Slack, Discord, Telegram,
webhooks, ...): a job's own `notify = [...]`, else the global $NOTIFY_URLS (comma or space
separated); `notify = []` silences a job. What is sent:

- a change: never on a target's first check, never for errors, nor when the job's filters
  were edited since the last check (the body changed because the filters did). The message
  names the job and URL and holds a unified diff of the filtered text, trimmed.
- after `alert_after` consecutive failed checks or runs (default 3), scrape and refresh alike:
  one alert naming the job and the last error; then, on the next success, one "recovered"
  message. No message for each failed run.

Each message carries Apprise's type: failure for alerts (Slack and Discord colour them),
success for recoveries, info for changes.

A notification that fails is logged and reported in the check's result line; the check
itself is already stored. Apprise is imported only when something is sent (cold starts).
"""

import difflib
import logging
import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from shared.platform import log

logger = logging.getLogger(__name__)

MAX_DIFF_LINES = 60  # lines of diff in a message; the rest is counted, not shown
MAX_DIFF_CHARS = 3000  # well under the smallest common limit (Discord: 2000 per part, split)
CONTEXT_LINES = 2  # unchanged lines shown around each change


SUCCESSES = ("new", "unchanged", "changed", "ok")  # outcomes that end a failure streak
# Apprise's notification types (apprise.NotifyType values), named here so that building a
# message never imports Apprise.
INFO, SUCCESS, FAILURE = "info", "success", "failure"


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    type: str = INFO  # INFO | SUCCESS | FAILURE


@dataclass(frozen=True)
class Check:
    """What one stored check or finished run means for notifications (filled in by
    shared/scrape/run.py and shared/refresh/run.py)."""

    outcome: str  # new | unchanged | changed | ok | duplicate | error
    at: str  # when, for the message (ISO time)
    body: str | None = None  # the filtered content, on success
    previous_body: str | None = None  # the content before, when changed
    filters_changed: bool = False  # the job's filters were edited since the previous check
    streak_before: int = 0  # consecutive failures before this check
    streak: int = 0  # consecutive failures after it
    error: str | None = None
    unit: str = "checks"  # what failed in a row: "checks" (scrape) or "runs" (refresh)


def register_secrets(url: str) -> None:
    """Keep an Apprise URL's password and tokens out of every log line."""
    log.add_secret(url)
    parts = urlsplit(url)
    log.add_secret(unquote(parts.password or ""))
    # Tokens sit anywhere: before the host (ntfy://token@), as the "host" (tgram://bot:token/chat),
    # in the path (slack://T/B/C) or the query (?token=). A dotted host name is not one.
    pieces = re.split(r"[:@]", parts.netloc) + parts.path.split("/") + [v for _, v in parse_qsl(parts.query)]
    for piece in pieces:
        host_name = piece.lower() == parts.hostname and "." in piece
        if len(piece) >= 8 and re.search(r"\d", piece) and not host_name:
            log.add_secret(unquote(piece))


def global_urls() -> tuple[str, ...]:
    urls = tuple(u for u in re.split(r"[\s,]+", os.environ.get("NOTIFY_URLS", "")) if u)
    for url in urls:
        register_secrets(url)
    return urls


def urls_for(job) -> tuple[str, ...]:
    return job.notify if job.notify is not None else global_urls()


def messages_for(job, check: Check) -> list[Message]:
    """The messages this check calls for: usually none."""
    messages = []
    where = log.redact(job.where)
    if check.outcome == "changed" and not check.filters_changed and check.previous_body is not None:
        diff = unified_diff(check.previous_body, check.body or "")
        messages.append(Message(f"{job.name} changed", log.redact(f"{job.name} changed ({check.at})\n{where}\n\n{diff}")))
    if check.outcome == "error" and check.streak_before < job.alert_after <= check.streak:
        messages.append(Message(f"{job.name} is failing",
                                log.redact(f"{job.name}: the last {check.streak} {check.unit} failed ({check.at})\n"
                                           f"{where}\n\nLast error: {check.error}"), FAILURE))
    if check.outcome in SUCCESSES and check.streak_before >= job.alert_after:
        messages.append(Message(f"{job.name} recovered",
                                f"{job.name} recovered after {check.streak_before} failed {check.unit} ({check.at})\n{where}",
                                SUCCESS))
    return messages


def unified_diff(before: str, after: str) -> str:
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), "before", "after",
                                      n=CONTEXT_LINES, lineterm=""))
    shown, size = [], 0
    for line in lines:
        if len(shown) >= MAX_DIFF_LINES or size + len(line) > MAX_DIFF_CHARS:
            break
        shown.append(line)
        size += len(line) + 1
    if len(shown) < len(lines):
        shown.append(f"... {len(lines) - len(shown)} more diff lines not shown")
    return "\n".join(shown)


def send(urls: tuple[str, ...], message: Message) -> list[str]:
    """Send to each URL; returns one short reason per URL that failed (no secrets in it)."""
    import apprise  # lazy: heavy, and most runs send nothing

    failures = []
    for url in urls:
        service = _service_name(url)
        sender = apprise.Apprise()
        try:
            if not sender.add(url):
                failures.append(f"{service}: not a valid Apprise URL")
                continue
            if not sender.notify(title=message.title, body=message.body, body_format=apprise.NotifyFormat.TEXT,
                                 notify_type=apprise.NotifyType(message.type)):
                failures.append(f"{service}: not delivered (see log)")
        except Exception as exc:  # a broken plugin must not lose the check
            failures.append(f"{service}: {log.redact(str(exc))}")
    return failures


def _service_name(url: str) -> str:
    """The scheme and host, without credentials: enough to tell which notification failed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" if host and not re.search(r"\d{6,}", host) else f"{parts.scheme}://"


def after_check(job, check: Check) -> str | None:
    """Send what one stored check calls for. Returns None, or why a notification failed."""
    try:
        messages = messages_for(job, check)
        urls = urls_for(job) if messages else ()
        failures = [failure for message in messages for failure in send(urls, message)] if urls else []
    except Exception as exc:  # a bug here must not stop the run's other targets
        logger.exception("%s: notifications failed", job.name)
        failures = [log.redact(str(exc))]
    for failure in failures:
        logger.warning("%s: notification failed: %s", job.name, failure)
    return "notification failed: " + "; ".join(failures) if failures else None
