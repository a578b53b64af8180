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
A run sends through shared/notify/outbox.py (a small pool, a timeout per message, nothing
past the run's deadline); `deliver()` below sends one message to one URL.

Secrets: message texts are redacted before anything trims them (the diff, Apprise's own
splitting), a URL's password and tokens are registered with their URL-encoded forms, and
Apprise's own log records are redacted at the source (`_AppriseRecords`), masked fragments
such as `T...2` included, before any handler sees them.
"""

import logging
import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus, urlsplit

from shared.core import log
from shared.core.result import SUCCESSES

logger = logging.getLogger(__name__)

MAX_DIFF_LINES = 60  # lines of diff in a message; the rest is counted, not shown
MAX_DIFF_CHARS = 3000  # well under the smallest common limit (Discord: 2000 per part, split)
CONTEXT_LINES = 2  # unchanged lines shown around each change
MAX_DIFF_INPUT_LINES = 2000  # changed lines compared, per side: bounds the diff's time


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
    """Keep an Apprise URL's password and tokens out of every log line and message, in the
    forms they take in URLs and logs (as written, decoded, %-encoded)."""
    log.add_secret(url)
    try:
        parts = urlsplit(url)
        password, hostname = parts.password, parts.hostname
    except ValueError:  # not a URL Apprise could use either; the whole of it is registered
        return
    values = [password or ""]
    # Tokens sit anywhere: before the host (ntfy://token@), as the "host" (tgram://bot:token/chat),
    # in the path (slack://T/B/C) or the query (?token=). A dotted host name is not one. A piece
    # holding what a ${VAR} brought in (already a secret) is one whatever its shape.
    pieces = re.split(r"[:@]", parts.netloc) + parts.path.split("/") + [v for _, v in parse_qsl(parts.query)]
    for piece in pieces:
        host_name = piece.lower() == hostname and "." in piece
        looks_like_token = len(piece) >= 8 and re.search(r"\d", piece)
        if not host_name and (looks_like_token or log.redact(unquote(piece)) != unquote(piece)):
            values.append(piece)
    for value in values:
        _add_secret_forms(value)


def _add_secret_forms(value: str) -> None:
    plain = unquote(value)
    for form in {value, plain, unquote_plus(value), quote(plain, safe=""), quote(plain), quote_plus(plain)}:
        log.add_secret(form)


_usable: dict[str, str | None] = {}  # url -> unusable()'s answer: each URL is parsed once


def unusable(url: str) -> str | None:
    """Why Apprise cannot use `url` (naming its scheme, never its secrets), or None when it can."""
    if url not in _usable:
        import apprise  # lazy: heavy

        scheme = url.split("://", 1)[0] if "://" in url else ""
        shown = log.redact(scheme)[:30] if scheme.isascii() and scheme.replace("+", "").isalnum() else "?"
        try:
            usable = apprise.Apprise().add(url)
        except Exception:  # noqa: BLE001 - a plugin that cannot parse it: not usable
            usable = False
        _usable[url] = None if usable else (f"{shown}:// is not a notification service Apprise can use"
                                            " (see its list of services and URL forms)")
    return _usable[url]


def global_urls() -> tuple[str, ...]:
    urls = tuple(u for u in re.split(r"[\s,]+", os.environ.get("NOTIFY_URLS", "")) if u)
    for url in urls:
        register_secrets(url)
    return urls


def urls_for(job) -> tuple[str, ...]:
    """Where the job's messages go. Their secrets are registered here too, where they are used,
    whoever built the job (the jobs file registers them as it builds one)."""
    if job.notify is None:
        return global_urls()
    for url in job.notify:
        register_secrets(url)
    return job.notify


def messages_for(job, check: Check) -> list[Message]:
    """The messages this check calls for: usually none."""
    return plan(job, check)[0]


def plan(job, check: Check) -> tuple[list[Message], str | None]:
    """The messages this check calls for, and why a change sends none (for its result line:
    `changed (not notified: only removals)`). Every text is redacted, and the diff is made from
    redacted contents, so no trimming can leave part of a secret."""
    messages, why = [], None
    where = log.redact(job.where)
    if check.outcome == "changed" and check.filters_changed:
        why = "not notified: filters edited"
    elif check.outcome == "changed" and check.previous_body is not None:
        from shared.notify import diff  # here: difflib only for a run with a change to tell

        lines = diff.hunks(log.redact(check.previous_body), log.redact(check.body or ""), CONTEXT_LINES,
                           MAX_DIFF_INPUT_LINES)
        why = _not_notified(job, lines)
        if why is None:
            shown = _trimmed(["--- before", "+++ after"] + lines, job.name)
            messages.append(Message(log.redact(f"{job.name} changed"),
                                    log.redact(f"{job.name} changed ({check.at})\n{where}\n\n{shown}")))
    if check.outcome == "error" and check.streak_before < job.alert_after <= check.streak:
        messages.append(Message(log.redact(f"{job.name} is failing"),
                                log.redact(f"{job.name}: the last {check.streak} {check.unit} failed ({check.at})\n"
                                           f"{where}\n\nLast error: {check.error}"), FAILURE))
    if check.outcome in SUCCESSES and check.streak_before >= job.alert_after:
        messages.append(Message(log.redact(f"{job.name} recovered"),
                                log.redact(f"{job.name} recovered after {check.streak_before} failed {check.unit}"
                                           f" ({check.at})\n{where}"),
                                SUCCESS))
    return messages, why


def _not_notified(job, lines: list[str]) -> str | None:
    """Why a change does not notify under the job's `notify_on` and `notify_if`, or None."""
    added = [line[1:] for line in lines if line.startswith("+")]
    removed = [line for line in lines if line.startswith("-")]
    on = getattr(job, "notify_on", "any")
    if on == "added" and not added:
        return "not notified: only removals"
    if on == "removed" and not removed:
        return "not notified: only additions"
    pattern = getattr(job, "notify_if", None)
    if pattern:
        import re as regex  # the pattern was checked (bounded) when the job was built

        matcher = regex.compile(pattern)
        if not any(matcher.search(line[:MAX_MATCHED_CHARS]) for line in added):
            return "not notified: no added line matches notify_if"
    return None


MAX_MATCHED_CHARS = 2000  # of each added line, searched by notify_if (bounded like `ignore`)


def unified_diff(before: str, after: str, name: str = "NAME") -> str:
    """The diff between two contents, trimmed. Secrets are redacted first: a secret cut by the
    trimming (one of many lines, say) would no longer match, and part of it would show."""
    from shared.notify import diff

    lines = ["--- before", "+++ after"] + diff.hunks(log.redact(before), log.redact(after), CONTEXT_LINES,
                                                     MAX_DIFF_INPUT_LINES)
    return _trimmed(lines, name)


def _trimmed(lines: list[str], name: str) -> str:
    """At most MAX_DIFF_LINES lines and MAX_DIFF_CHARS characters of a diff, balanced: removed and
    added lines each get half of what is left after headers and context, so a large change shows
    both sides; what is cut is counted, with the command that shows the whole diff."""
    total = sum(len(line) + 1 for line in lines)
    if len(lines) <= MAX_DIFF_LINES and total <= MAX_DIFF_CHARS:
        return "\n".join(lines)
    budget = {"-": [MAX_DIFF_LINES // 2, MAX_DIFF_CHARS // 2], "+": [MAX_DIFF_LINES // 2, MAX_DIFF_CHARS // 2]}
    shown, size, cut = [], 0, 0
    for line in lines:
        sign = line[:1] if line[:1] in "-+" and not line.startswith(("---", "+++")) else ""
        if sign:
            count, chars = budget[sign]
            if count <= 0 or chars < len(line) + 1:
                cut += 1
                continue
            budget[sign] = [count - 1, chars - len(line) - 1]
        elif len(shown) >= MAX_DIFF_LINES or size + len(line) > MAX_DIFF_CHARS:
            cut += 1
            continue
        shown.append(line)
        size += len(line) + 1
    shown.append(f"... {cut} more diff lines not shown: python -m functions.history diff {name}")
    return "\n".join(shown)


def send(urls: tuple[str, ...], message: Message, timeout: float | None = None) -> list[str]:
    """Send to each URL, one after another; returns one short reason per URL that failed."""
    return [failure for url in urls if (failure := deliver(url, message, timeout))]


def deliver(url: str, message: Message, timeout: float | None = None) -> str | None:
    """Send one message to one Apprise URL, here, on this thread. None when it was delivered,
    else a short reason without secrets. `timeout` caps the plugin's own socket timeouts (the
    `cto`/`rto` of Apprise's URLs: connect, and each read; the email plugin's SMTP socket
    timeout is its `cto`): a server that answers nothing fails within it, one that trickles may
    not, which is why the Outbox also stops waiting at the timeout."""
    import apprise  # lazy: heavy, and most runs send nothing

    service = service_name(url)
    try:
        # service_timeout=0: Apprise calls the plugin on this thread. With its default (60 s) it
        # runs each service on a shared pool of non-daemon threads, and a hung one would hold
        # the process at exit.
        sender = apprise.Apprise(asset=apprise.AppriseAsset(service_timeout=0))
        if not sender.add(url):
            return f"{service}: not a valid Apprise URL"
        if timeout is not None:
            for server in sender:
                server.socket_connect_timeout = min(server.socket_connect_timeout or timeout, timeout)
                server.socket_read_timeout = min(server.socket_read_timeout or timeout, timeout)
        if not sender.notify(title=message.title, body=message.body, body_format=apprise.NotifyFormat.TEXT,
                             notify_type=apprise.NotifyType(message.type)):
            return f"{service}: not delivered (see log)"
    except Exception as exc:  # a broken plugin must not lose the check
        return f"{service}: {log.redact(str(exc))}"
    return None


def service_name(url: str) -> str:
    """The scheme and host, without credentials: enough to tell which notification failed. A
    "host" that is a token (tgram://bot:token, slack://T.../...) is left out."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return f"{log.redact(scheme)}://"
    written = parts.netloc.rpartition("@")[2]  # as written: hostname is lower-cased
    token_like = "." not in host and len(host) >= 8 and re.search(r"\d", host)  # as register_secrets sees it
    if not host or token_like or re.search(r"\d{6,}", host) or log.redact(written) != written or log.redact(host) != host:
        return f"{parts.scheme}://"
    return f"{parts.scheme}://{host}"


class _AppriseRecords(logging.Filter):
    """Redacts Apprise's own log records where they are made, before any handler (ours, Lambda's,
    Apprise's capture of a call's logs) sees them. Our handlers redact registered secrets too;
    this also catches what Apprise does to them first:

    - its "privacy" URLs keep a token's first and last character (`slack://T...2/A...D/`) or its
      last four (`...a1b2`): masked to `***`;
    - an answer it quotes in a debug record is cut at 2,000 bytes, and a secret cut there would
      not match: the trailing word of a cut excerpt is dropped.
    """

    MASKED = re.compile(r"(?<=[/:@=])(?:[^\s/:@?&#=]\.\.\.[^\s/:@?&#=]|\.\.\.[^\s/:@?&#=]{1,4})"
                        r"(?=[/:@?&#,;'\"\s)]|$)")
    CUT_AT = 2000  # Apprise quotes at most this much of an answer
    CUT_WORD = re.compile(r"[^\s'\"<>(){}\[\],;]+\Z")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.args, tuple):
                record.args = tuple(self._uncut(arg) for arg in record.args)
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted: keep its template only
            message = str(record.msg)
        record.msg, record.args = self.MASKED.sub("***", log.redact(message)), None
        return True

    def _uncut(self, arg):
        if isinstance(arg, bytes) and len(arg) >= self.CUT_AT:
            return self.CUT_WORD.sub("[cut]", arg.decode("utf-8", "replace")).encode()
        if isinstance(arg, str) and len(arg) >= self.CUT_AT:
            return self.CUT_WORD.sub("[cut]", arg)
        return arg


def _install_log_filter() -> None:
    """Apprise logs on the "apprise" logger (no handler of its own but a NullHandler; its records
    propagate to the root logger, whose handlers shared/core/log.py makes redact)."""
    apprise_logger = logging.getLogger("apprise")
    if not any(isinstance(f, _AppriseRecords) for f in apprise_logger.filters):
        apprise_logger.addFilter(_AppriseRecords())


_install_log_filter()
