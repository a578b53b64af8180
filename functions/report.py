"""The history report: `python -m functions.report [--days N] [--html FILE]` (or `make report`).

Prints, per target, checks, changes, failed checks and missed runs per day, last check, last
change and the error streak, then the database's size against DB_PLAN_LIMIT_MB. Schedules
(`every`) come from the jobs file ($JOBS_FILE, default ./jobs.toml); without one, missed runs
are not counted. `--html FILE` also writes one self-contained page with a timeline per target.
Exit codes: 0 done, 1 database unreachable, 2 bad usage or configuration.
"""

import argparse
import os
import sys
from pathlib import Path

from shared import config, db, log, report, scrape


def schedules() -> tuple[dict[str, str | None], str | None]:
    """Job name -> `every` from the jobs ($JOBS_TOML or the jobs file), and a note when there are
    none. Reads only names and schedules, so the secrets that ${VAR}s name need not be set here."""
    if not os.environ.get("JOBS_TOML") and not config.jobs_file_path().exists():
        return {}, f"No jobs file at {config.jobs_file_path()}: schedules unknown, missed runs not counted."
    return {name: when.every for kind, name, when in config.load_schedules() if kind == "scrape"}, None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.report", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=report.DEFAULT_DAYS, help="days shown, today included")
    parser.add_argument("--html", metavar="FILE", help="also write the report as one self-contained HTML page")
    args = parser.parse_args(argv)
    log.setup()
    if args.days < 1:
        parser.error("--days must be at least 1")
    try:
        by_name, note = schedules()
        report.plan_limit_bytes()  # a bad DB_PLAN_LIMIT_MB fails before connecting
        con = db.connect()
    except (config.ConfigError, db.DatabaseConfigError, ValueError) as exc:
        print(f"error: {log.redact(str(exc))}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"error: {log.redact(str(exc))}", file=sys.stderr)
        return 1
    try:
        scrape.ensure_schema(con)
        result = report.build(con, by_name, days=args.days, note=note)
    finally:
        con.close()
    print(log.redact(report.text(result)), end="")
    if args.html:
        Path(args.html).write_text(log.redact(report.html(result)), encoding="utf-8")
        print(f"HTML report written to {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
