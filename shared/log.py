"""Logging that never prints a secret.

Every module logs through the standard `logging` package; `setup()` installs one handler whose
filter replaces each registered secret (database passwords, API keys) with `***`, whatever
message, argument or traceback carries it. Modules that learn a secret call `add_secret()`.
"""

import logging
import sys

_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """Remember a value that must never appear in a log line (ignored if short or empty)."""
    if value and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    """Return `text` with every registered secret replaced by `***`."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _RedactingFormatter(logging.Formatter):
    """Wraps a handler's own formatter (Lambda's, say, with its format and date format) and
    redacts what it produces."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: str = "INFO") -> None:
    """Send log records to stderr, one line each, secrets redacted. Safe to call twice."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    # Lambda installs its own handler before our code runs: redact through it too.
    for handler in root.handlers:
        if not isinstance(handler.formatter, _RedactingFormatter):
            handler.setFormatter(_RedactingFormatter(handler.formatter or logging.Formatter(FORMAT)))
