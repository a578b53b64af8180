"""Checks shared by every job dataclass: key types, lists of strings, endpoints, and the keys
every kind has (`name`, the schedule `every`/`at`/`cron`, `notify`, `alert_after`).

Each raises ValueError naming the key; shared/config.py adds the file and the job.
"""

import re

from shared.platform import schedule


def check_type(job, key: str, kind) -> None:
    value = getattr(job, key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"key {key!r} must be a {names}, not {type(value).__name__}")


def as_strings(job, key: str) -> None:
    """A string or a list of strings, kept as a tuple (the dataclass is frozen)."""
    value = getattr(job, key)
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"key {key!r} must be a string or a list of non-empty strings")
    object.__setattr__(job, key, tuple(value))


def check_url(job, key: str) -> None:
    """An http(s) endpoint with no query string: keys never travel in URLs."""
    value = getattr(job, key)
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{key} {value!r} must be an http:// or https:// address")
    if "?" in value or "#" in value or "api_key" in value:
        raise ValueError(f"{key} must be a plain endpoint: no query string (the API key goes in 'api_key')")


def check_common(job, kind: str) -> None:
    """The keys every job has: its name, its schedule, and whom to tell when it fails."""
    from shared.report.notify import register_secrets

    check_type(job, "name", str)
    schedule.parse(job.every, job.at, job.cron, kind)  # ScheduleError is a ValueError
    if job.notify is not None:
        as_strings(job, "notify")
        for url in job.notify:
            if not re.match(r"^[a-z][a-z0-9+.-]*://", url):
                raise ValueError("key 'notify' holds an entry that is not an Apprise URL (scheme://...)")
            register_secrets(url)
    check_type(job, "alert_after", int)
    if not 1 <= job.alert_after <= 10000:
        raise ValueError(f"key 'alert_after' must be between 1 and 10000, not {job.alert_after}")
