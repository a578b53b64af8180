"""What the project is called, and what may name a job."""

import re

NAME = "scheduled-jobs"
VERSION = "0.2.0"
USER_AGENT = f"{NAME}/{VERSION} (+scheduled page checks)"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
NAME_RULE = "may use letters, digits, '_', '.', '-' (up to 100)"


def valid_name(name) -> bool:
    """Whether `name` can name a job: one line of safe characters (fullmatch: `$` would let a
    trailing newline through, and a result line must stay one line)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None
