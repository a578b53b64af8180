"""When a job runs: the `every`, `at` and `cron` keys of a job, for both platforms.

    every = "10m" | "1h" | "1d"   # what Heroku Scheduler can express
    at = "04:30"                  # daily jobs: time of day, UTC (Heroku: on the hour or half hour)
    at = ":20"                    # hourly jobs: minute past the hour (Heroku: 00, 10, ... 50)
    cron = "0 4 ? * MON-FRI *"    # AWS only: an EventBridge cron expression (6 fields), instead of every

Times are UTC on both platforms. A cron expression is checked field by field when the jobs file
is read (check_cron), so a mistake names the job and the field instead of failing a deploy.
"""

import re
from dataclasses import dataclass

from shared.core import numbers

EVERY = {"10m": 600, "1h": 3600, "1d": 86400}  # seconds between runs

_DAILY_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_HOURLY_AT = re.compile(r"^:([0-5]\d)$")


@dataclass(frozen=True)
class CronField:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # accepted instead of numbers, the first meaning `low`
    special: str = ""  # EventBridge's extra wildcards allowed in this field: ? L W #


MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # EventBridge numbers them 1-7 from Sunday
CRON_FIELDS = (
    CronField("minutes", 0, 59),
    CronField("hours", 0, 23),
    CronField("day-of-month", 1, 31, special="?LW"),
    CronField("month", 1, 12, MONTHS),
    CronField("day-of-week", 1, 7, DAYS, special="?L#"),
    CronField("year", 1970, 2199),
)


class ScheduleError(ValueError):
    """A schedule key is wrong; shared/app/config.py adds the file and the job."""


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


def parse(every: str | None, at: str | None, cron: str | None, default_every: str) -> Schedule:
    """Check a job's schedule keys (`every` defaults to its kind's `default_every`); errors say
    which key is wrong."""
    if cron is not None:
        if every is not None or at is not None:
            raise ScheduleError("key 'cron' replaces 'every' and 'at': give one or the other")
        if not isinstance(cron, str):
            raise ScheduleError("key 'cron' must be a string")
        check_cron(cron)
        return Schedule(None, None, " ".join(cron.split()))
    every = default_every if every is None else every
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


def check_cron(cron: str) -> None:
    """Check an EventBridge cron expression field by field (AWS's rules: six fields, each
    value in range, month and day names, exactly one of the day fields `?`); ScheduleError
    names the field."""
    fields = cron.split()
    if len(fields) != 6:
        raise ScheduleError(f"key 'cron': {cron!r} is not an EventBridge cron expression "
                            "(6 fields: minutes hours day-of-month month day-of-week year)")
    for spec, text in zip(CRON_FIELDS, fields):
        try:
            _check_field(spec, text)
        except ValueError as exc:
            raise ScheduleError(f"key 'cron': {cron!r}: {spec.name} {text!r}: {exc}") from None
    # EventBridge cannot combine a day of the month with a day of the week.
    if (fields[2] == "?") == (fields[4] == "?"):
        raise ScheduleError(f"key 'cron': {cron!r}: EventBridge needs '?' in exactly one of day-of-month and"
                            " day-of-week (e.g. \"0 4 ? * MON-FRI *\" or \"0 4 1 * ? *\")")


def _check_field(spec: CronField, text: str) -> None:
    if text == "?":
        if "?" not in spec.special:
            raise ValueError("'?' is only allowed in day-of-month or day-of-week")
        return
    for item in text.split(","):
        _check_item(spec, item)


def _check_item(spec: CronField, item: str) -> None:
    if not item:
        raise ValueError("empty item in a list")
    if "?" in item:
        raise ValueError("'?' must stand alone")
    if spec.name == "day-of-month" and item in ("L", "LW"):
        return
    if spec.name == "day-of-month" and item.endswith("W"):
        _value(spec, item[:-1])  # nW: the weekday nearest day n
        return
    if spec.name == "day-of-week" and item == "L":
        return
    if spec.name == "day-of-week" and item.endswith("L"):
        _value(spec, item[:-1])  # nL: the last such day of the month
        return
    if spec.name == "day-of-week" and "#" in item:
        day, _, nth = item.partition("#")
        _value(spec, day)
        if not numbers.is_whole(nth) or not 1 <= int(nth) <= 5:
            raise ValueError(f"'#{nth}' must be #1 to #5 (the nth such day of the month)")
        return
    start, slash, step = item.partition("/")
    if slash:
        if not numbers.is_whole(step) or int(step) < 1:
            raise ValueError(f"increment '/{step}' must be a whole number of at least 1")
    if start == "*":
        return
    low, dash, high = start.partition("-")
    _value(spec, low)
    if dash:
        _value(spec, high)


def _value(spec: CronField, text: str) -> int:
    if text.upper() in spec.names:
        return spec.low + spec.names.index(text.upper())
    if numbers.is_whole(text):
        if not spec.low <= int(text) <= spec.high:
            raise ValueError(f"{text} is not in {spec.low}-{spec.high}")
        return int(text)
    names = f" or {spec.names[0]}-{spec.names[-1]}" if spec.names else ""
    raise ValueError(f"{text!r} is not {spec.low}-{spec.high}{names}")
