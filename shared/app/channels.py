"""`python -m functions.notify --test`: one test message to each distinct notification channel of
the jobs file, one line per channel, so a typo'd URL or a refused password shows the day it is
written, not the day the first change or alert needs it."""

import sys

from shared.app import config
from shared.app.kinds import KINDS
from shared.core import errors
from shared.core.errors import ConfigError
from shared.core.text import one_line
from shared.notify import messages

TIMEOUT = 20.0  # seconds per channel


def test(names: list[str] | None = None) -> int:
    entries = [e for e in config.entries() if e.kind in KINDS]
    if names:
        missing = sorted(set(names) - {e.name for e in entries})
        if missing:
            raise ConfigError(f"{config.jobs_source()}: no job named {', '.join(map(repr, missing))}")
        entries = [e for e in entries if e.name in names]
    found: dict[str, list[str]] = {}  # url -> the jobs it serves, in the file's order
    code = 0
    for entry in entries:
        try:
            job = config.build(entry)
        except ConfigError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            code = errors.USAGE
            continue
        for url in messages.urls_for(job):
            found.setdefault(url, []).append(job.name)
    if not found and not code:
        print("no notification channel: set NOTIFY_URLS, or a job's notify")
    message = messages.Message("Test message", "A test message from your scheduled jobs: this channel works.")
    for url, jobs in found.items():
        failure = messages.deliver(url, message, TIMEOUT)
        served = f" ({', '.join(jobs[:5])}{', ...' if len(jobs) > 5 else ''})"
        if failure:
            print(one_line(f"{failure}{served}"))
            code = code or errors.FAILED
        else:
            print(one_line(f"{messages.service_name(url)}: sent{served}"))
    return code
