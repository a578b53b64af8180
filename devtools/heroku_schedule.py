"""Print the Heroku Scheduler entries for the jobs file: `make heroku-schedule`.

Heroku has no API for Scheduler jobs, so this prints what to paste into the dashboard
(Resources > Heroku Scheduler > Create job): one entry per job kind and frequency.
A job that Heroku cannot schedule (a cron expression, an odd minute) is an error naming it.
"""

import sys

from shared.app import config, entry
from shared.app.kinds import KINDS
from shared.core.errors import ConfigError
from shared.core.schedule import ScheduleError


def entries(schedules: list, source: str) -> list[tuple[str, str]]:
    """[(frequency, command)], one per job kind and frequency, in the jobs file's order."""
    groups: dict[tuple[str, str], list[str]] = {}
    for kind, name, schedule in schedules:
        try:
            frequency = schedule.heroku_frequency()
        except ScheduleError as exc:
            raise ConfigError(f"{source}: [[{kind}]] job {name!r}: {exc}") from None
        groups.setdefault((kind, frequency), []).append(name)
    out = []
    for (kind, frequency), names in groups.items():
        command = f"python -m functions.{KINDS[kind].command}"
        if sum(1 for k, _ in groups if k == kind) > 1:  # else the command runs every job of its kind
            command += "".join(f" --job {name}" for name in names)
        out.append((frequency, command))
    return out


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
