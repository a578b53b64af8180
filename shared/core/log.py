"""Logging that never prints a secret, as text lines or as one JSON object per line.

Every module logs through the standard `logging` package; `setup()` installs one handler whose
formatter replaces each registered secret (database passwords, API keys) with `***`, whatever
message, argument or traceback carries it. Modules that learn a secret call `add_secret()`.

    LOG_LEVEL=DEBUG    also shows Apprise's, botocore's and urllib3's own records (WARNING otherwise)
    LOG_FORMAT=json    one JSON object per line (the default in Lambda, for CloudWatch Logs
                       Insights): time, level, logger, message, and for a result job, outcome,
                       reason and duration
"""

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone

_secrets: set[str] = set()
_sorted = None  # the secrets' forms, longest first, as written and without gaps; None: to sort anew

# What may split a secret where it is shown: whitespace and line breaks (an answer folding it
# across lines), control characters and terminal escape sequences, zero-width characters and
# soft hyphens.
# An ANSI escape sequence (CSI: ESC [ ... final byte) counts as one gap.
GAP = "(?:\x1b\\[[0-?]*[ -/]*[@-~]|[\\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028\u2029\u2060\ufeff])"
_GAP = re.compile(GAP)

# Libraries that talk a lot at INFO: quiet unless LOG_LEVEL=DEBUG.
CHATTY = ("apprise", "botocore", "boto3", "urllib3", "s3transfer", "requests")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
RESULT_FIELDS = ("job", "outcome", "reason", "notice", "duration")


# What a URL's path or query keeps as written (RFC 3986); urllib3 %-encodes the rest when it
# sends the request, and a page echoing its request shows that form.
URL_SAFE = "!$&'()*+,;=:@/?~"


def add_secret(value: str | None) -> None:
    """Remember a value that must never appear in a log line (ignored if short or empty)."""
    global _sorted
    if value and len(value) >= 4:
        new = {form for form in _forms(value) if len(_GAP.sub("", form)) >= 4} - _secrets
        if new:
            _secrets.update(new)
            _sorted = None


def _forms(value: str) -> set[str]:
    """A secret as it may be written where it is shown: as is, escaped by repr() (messages) or
    JSON (JSON log lines), %-encoded as a request carries it, HTML-escaped (a page echoing its
    URL). A secret with a quote, a backslash, a space or a non-ASCII letter differs in each."""
    import html
    from urllib.parse import quote, quote_plus

    sent = quote(value, safe=URL_SAFE)
    return {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            html.escape(value), sent, html.escape(sent), quote(value, safe=""), quote_plus(value, safe="")}


def redact(text: str) -> str:
    """Return `text` with every registered secret replaced by `***`, also where whitespace, line
    breaks, control characters or escape sequences split it (the whole span goes, splits too).

    Exact forms first (str.replace, longest first). Then, only when the text holds a gap at all,
    a copy with every gap removed is searched for each secret with its own gaps removed; a hit
    (rare: a secret folded or split) is mapped back to its span in the text. Linear in the text
    for each secret, with no expression to compile however many secrets there are."""
    global _sorted
    if not _secrets or not text:
        return text
    if _sorted is None:
        _sorted = (sorted(_secrets, key=len, reverse=True),
                    sorted({_GAP.sub("", s) for s in _secrets}, key=len, reverse=True))
    exact, squeezed_forms = _sorted
    for secret in exact:
        if secret in text:
            text = text.replace(secret, "***")
    if not _GAP.search(text):
        return text
    squeezed = _GAP.sub("", text)
    hits = [form for form in squeezed_forms if form in squeezed]
    return _redact_split(text, squeezed, hits) if hits else text


def _redact_split(text: str, squeezed: str, hits: list[str]) -> str:
    """Replace, in `text`, the spans whose gap-free copy is one of `hits` (found in `squeezed`)."""
    from bisect import bisect_right

    positions, removed = [], []  # each gap run: its place in `squeezed`, the gap length up to it
    total = 0
    for run in re.finditer(f"{GAP}+", text):
        positions.append(run.start() - total)
        total += run.end() - run.start()
        removed.append(total)

    def original(index: int) -> int:  # a character's index in `squeezed` -> in `text`
        before = bisect_right(positions, index)
        return index + (removed[before - 1] if before else 0)

    spans, taken = [], bytearray(len(squeezed))
    for form in hits:  # longest first
        start = squeezed.find(form)
        while start >= 0:
            end = start + len(form)
            if not any(taken[start:end]):
                taken[start:end] = b"\x01" * len(form)
                spans.append((original(start), original(end - 1) + 1))
            start = squeezed.find(form, start + 1)
    out, last = [], 0
    for start, end in sorted(spans):
        out += [text[last:start], "***"]
        last = end
    return "".join(out) + text[last:]


class JsonFormatter(logging.Formatter):
    """One JSON object per record; a result's fields (passed as `extra`) become keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update({key: getattr(record, key) for key in RESULT_FIELDS if getattr(record, key, None) is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _RedactingFormatter(logging.Formatter):
    """Wraps a handler's own formatter (Lambda's, say, with its format and date format) and
    redacts what it produces."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def json_lines() -> bool:
    """Whether lines go out as JSON objects ($LOG_FORMAT=json, the default in Lambda)."""
    return (os.environ.get("LOG_FORMAT") or ("json" if in_lambda() else "text")).lower() == "json"


def setup() -> None:
    """Send log records to stderr, one line each, secrets redacted, at $LOG_LEVEL (INFO) in
    $LOG_FORMAT (text; json in Lambda). Safe to call again: it applies the settings anew."""
    problems = []
    level = (os.environ.get("LOG_LEVEL") or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"LOG_LEVEL={level!r} is not DEBUG, INFO, WARNING or ERROR: using INFO")
        level = "INFO"
    style = (os.environ.get("LOG_FORMAT") or ("json" if in_lambda() else "text")).lower()
    if style not in FORMATS:
        problems.append(f"LOG_FORMAT={style!r} is not text or json: using text")
        style = "text"
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    # Lambda installs its own handler before our code runs: redact through it too.
    for handler in root.handlers:
        inner = handler.formatter
        if isinstance(inner, _RedactingFormatter):
            inner = getattr(inner, "original", inner.inner)
        wrapped = _RedactingFormatter(JsonFormatter() if style == "json" else inner or logging.Formatter(FORMAT))
        wrapped.original = inner  # what to go back to when setup() runs again with LOG_FORMAT=text
        handler.setFormatter(wrapped)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)
    for problem in problems:
        logging.getLogger(__name__).warning("%s", problem)
