"""Print the Heroku Scheduler entries for the jobs file: `make heroku-schedule`.

Heroku has no API for Scheduler jobs, so this prints what to paste into the dashboard
(Resources > Heroku Scheduler > Create job): one entry per job kind and schedule, whose command
selects the jobs of that schedule (`--every 10m`), so a job added on that schedule needs no new
entry. Re-run it after adding a job on a new schedule.
A job that Heroku cannot schedule (a cron expression, an odd minute) is an error naming it.
"""

import sys

from shared.app import config, entry
from shared.app.kinds import KINDS
from shared.core.errors import ConfigError
from shared.core.schedule import ScheduleError


def entries(schedules: list, source: str) -> list[tuple[str, str]]:
    """[(frequency, command)], one per job kind and schedule, in the jobs file's order. Each
    command selects its jobs by schedule, never by name: a job added later on a schedule that
    has an entry runs from it; one on a new schedule needs a new entry (re-run this), and until
    then every run reports it overdue."""
    groups: dict[tuple[str, str], tuple[str, str]] = {}
    for kind, name, schedule in schedules:
        try:
            frequency = schedule.heroku_frequency()
        except ScheduleError as exc:
            raise ConfigError(f"{source}: [[{kind}]] job {name!r}: {exc}") from None
        selector = f" --every {schedule.every}" + (f" --at {schedule.at}" if schedule.at else "")
        groups.setdefault((kind, frequency), (frequency, f"python -m functions.{KINDS[kind].command}{selector}"))
    return list(groups.values())


def main() -> int:
    return entry.run_command(_print_entries)


def _print_entries() -> int:
    found = entries(config.schedules(), config.jobs_source())
    print("Heroku Scheduler entries (Resources > Heroku Scheduler > Create job), times in UTC:\n")
    for frequency, command in found:
        print(f"  {frequency:<28} {command}")
    print("\nSecrets stay in config vars, never in these commands (Heroku logs the expanded command).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
