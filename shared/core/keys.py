"""Checks shared by every job dataclass: key types, lists of strings, endpoints, and the keys
every kind has (`name`, the schedule `every`/`at`/`cron`, `notify`, `alert_after`, `heartbeat`).

Each raises ValueError naming the key; shared/app/config.py adds the file and the job. They only
check: a job table's lists become tuples before the dataclass is built (`as_tuples`), so a
frozen job is never changed after it exists.
"""

import re
from dataclasses import fields

from shared.core import schedule


def as_tuples(cls, table: dict) -> dict:
    """`table` with the values of `cls`'s tuple fields written as tuples: a list as its items,
    a lone string as a one-item tuple (`select = "h1"` means `select = ["h1"]`)."""
    tuple_fields = {f.name for f in fields(cls) if str(f.type).startswith("tuple")}
    converted = dict(table)
    for key in tuple_fields & converted.keys():
        value = converted[key]
        if isinstance(value, str):
            converted[key] = (value,)
        elif isinstance(value, list):
            converted[key] = tuple(value)
    return converted


class KeyProblem(ValueError):
    """A key's value is wrong. `text` names the key as `{key}`, so the jobs file can call it by
    the name its writer used: `key 'api_key'` in a file, `variable CARTO_API_KEY` for a job read
    from the environment. `hint` is advice that only makes sense in a file."""

    def __init__(self, key: str, text: str, hint: str | None = None):
        self.key, self.text, self.hint = key, text, hint
        super().__init__(self.render(f"key {key!r}"))

    def render(self, name: str, with_hint: bool = True) -> str:
        # replace, not format: the text may quote a value holding braces; {key} comes first
        return self.text.replace("{key}", name, 1) + (f" ({self.hint})" if self.hint and with_hint else "")


def check_type(job, key: str, kind) -> None:
    value = getattr(job, key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"key {key!r} must be a {names}, not {type(value).__name__}")


def check_strings(job, key: str) -> None:
    """A tuple of non-empty strings (see as_tuples)."""
    value = getattr(job, key)
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"key {key!r} must be a string or a list of non-empty strings")


def check_url(job, key: str) -> None:
    """An http(s) endpoint with no query string: keys never travel in URLs."""
    value = getattr(job, key)
    if not re.match(r"^https?://[^/\s]+", value):
        raise KeyProblem(key, "{key} " + f"{value!r} must be an http:// or https:// address")
    if "?" in value or "#" in value or "api_key" in value:
        raise KeyProblem(key, "{key} must be a plain endpoint: no query string (the API key goes in 'api_key')")


def check_common(job, default_every: str) -> None:
    """The keys every job has: its name, its schedule, and whom to tell when it fails."""
    check_type(job, "name", str)
    schedule.parse(job.every, job.at, job.cron, default_every)  # ScheduleError is a ValueError
    if job.notify is not None:
        check_strings(job, "notify")
        for url in job.notify:
            if not re.match(r"^[a-z][a-z0-9+.-]*://", url):
                raise ValueError("key 'notify' holds an entry that is not an Apprise URL (scheme://...)")
    if getattr(job, "heartbeat", None) is not None:
        check_type(job, "heartbeat", str)
        if not re.match(r"^https?://[^/\s]+", job.heartbeat):
            raise KeyProblem("heartbeat", "{key} must be an http:// or https:// ping URL")
    check_type(job, "alert_after", int)
    if not 1 <= job.alert_after <= 10000:
        raise ValueError(f"key 'alert_after' must be between 1 and 10000, not {job.alert_after}")
