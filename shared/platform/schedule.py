"""When a job runs: the `every`, `at` and `cron` keys of a job, for both platforms.

    every = "10m" | "1h" | "1d"   # what Heroku Scheduler can express
    at = "04:30"                  # daily jobs: time of day, UTC (Heroku: on the hour or half hour)
    at = ":20"                    # hourly jobs: minute past the hour (Heroku: 00, 10, ... 50)
    cron = "0 4 ? * MON-FRI *"    # AWS only: an EventBridge cron expression (6 fields), instead of every

Times are UTC on both platforms.
"""

import re
from dataclasses import dataclass

EVERY = {"10m": 600, "1h": 3600, "1d": 86400}  # seconds between runs

_DAILY_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_HOURLY_AT = re.compile(r"^:([0-5]\d)$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/#L W-]+$")


class ScheduleError(ValueError):
    """A schedule key is wrong; shared/config.py adds the file and the job."""


@dataclass(frozen=True)
class Schedule:
    every: str | None  # None when cron is set
    at: str | None = None
    cron: str | None = None

    @property
    def interval(self) -> int | None:
        """Seconds between runs (None for cron schedules)."""
        return EVERY.get(self.every)

    def aws_expression(self) -> str:
        """The EventBridge Scheduler expression, UTC."""
        if self.cron:
            return f"cron({self.cron})"
        if self.every == "10m":
            return "rate(10 minutes)"
        if self.every == "1h":
            minute = int(self.at[1:]) if self.at else 0
            return f"cron({minute} * * * ? *)"
        hour, minute = (int(p) for p in (self.at or "00:00").split(":"))
        return f"cron({minute} {hour} * * ? *)"

    def heroku_frequency(self) -> str:
        """What to pick in the Heroku Scheduler dashboard; ScheduleError if it cannot."""
        if self.cron:
            raise ScheduleError("Heroku Scheduler cannot run cron expressions: use every = \"10m\", \"1h\" "
                                "or \"1d\" (with at), or deploy this job to AWS")
        if self.every == "10m":
            return "Every 10 minutes"
        if self.every == "1h":
            minute = self.at or ":00"
            if int(minute[1:]) % 10:
                raise ScheduleError(f"Heroku Scheduler runs hourly jobs at :00, :10, ... :50, not at {minute}")
            return f"Every hour at {minute}"
        at = self.at or "00:00"
        if at[3:] not in ("00", "30"):
            raise ScheduleError(f"Heroku Scheduler runs daily jobs on the hour or half hour, not at {at}")
        return f"Every day at {at} (UTC)"


def parse(every: str | None, at: str | None, cron: str | None, kind: str) -> Schedule:
    """Check a job's schedule keys (`every` defaults to its kind's); errors say which key is wrong."""
    from shared.kinds import KINDS
    if cron is not None:
        if every is not None or at is not None:
            raise ScheduleError("key 'cron' replaces 'every' and 'at': give one or the other")
        if not isinstance(cron, str):
            raise ScheduleError("key 'cron' must be a string")
        fields = cron.split()
        if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ScheduleError(f"key 'cron': {cron!r} is not an EventBridge cron expression "
                                "(6 fields: minutes hours day-of-month month day-of-week year)")
        if "?" not in (fields[2], fields[4]):
            raise ScheduleError("key 'cron': EventBridge needs '?' in day-of-month or day-of-week")
        return Schedule(None, None, cron)
    every = KINDS[kind].default_every if every is None else every
    if not isinstance(every, str) or every not in EVERY:
        raise ScheduleError(f"key 'every' must be one of {', '.join(map(repr, EVERY))}, not {every!r}")
    if at is not None:
        if not isinstance(at, str):
            raise ScheduleError("key 'at' must be a string such as \"04:30\" or \":20\"")
        if every == "1d" and not _DAILY_AT.match(at):
            raise ScheduleError(f"key 'at' must be HH:MM (UTC) for a daily job, not {at!r}")
        if every == "1h" and not _HOURLY_AT.match(at):
            raise ScheduleError(f"key 'at' must be :MM for an hourly job, not {at!r}")
        if every == "10m":
            raise ScheduleError("key 'at' only applies to hourly and daily jobs")
    return Schedule(every, at, None)
