"""The history report: `python -m functions.report [--days N] [--html FILE] [--feed FILE]` (or `make report`).

Prints, per scrape target and per refresh job, runs, changes, failures and missed runs per day,
the last success and the failure streak, then the database's size against DB_PLAN_LIMIT_MB.
Schedules come from the jobs file ($JOBS_TOML, $JOBS_FILE, default ./jobs.toml); without one,
missed runs are not counted. `--html FILE` also writes one self-contained page, `--feed FILE`
an Atom feed of the period's changes (shared/app/report/feed.py; `--feed-url URL`: its public
address); either, given `-` as FILE, is written alone to stdout.
Exit codes: 0 done, 1 database unreachable, 2 bad usage or configuration.
"""

import os
import sys
from pathlib import Path

from shared.app import config, entry, schema
from shared.app.report import feed, model, render
from shared.core import db, log
from shared.core.errors import ConfigError


def schedules() -> tuple[dict[tuple[str, str], str | None], str | None]:
    """(kind, job name) -> `every`, and a note when there is no jobs file. Reads only names and
    schedules, so the secrets that ${VAR}s name need not be set here."""
    if not config.has_jobs_file():
        return {}, f"No jobs file at {config.jobs_file_path()}: schedules unknown, missed runs not counted."
    return {(kind, name): when.every for kind, name, when in config.schedules()}, None


def _writable(name: str, option: str = "--html") -> Path:
    """The --html or --feed path, checked before the report is built: a file we may write, or may create."""
    path = Path(name)
    if path.is_dir():
        raise ConfigError(f"{option} {name}: is a folder, not a file")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"{option} {name}: no folder {folder}")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise ConfigError(f"{option} {name}: not writable")
    return path


def main(argv=None) -> int:
    parser = entry.argument_parser(prog="python -m functions.report", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=model.DEFAULT_DAYS, help="days shown, today included")
    parser.add_argument("--html", metavar="FILE",
                        help="also write the report as one self-contained HTML page; '-' writes only the page, to stdout")
    parser.add_argument("--feed", metavar="FILE",
                        help="also write an Atom feed of the period's changes; '-' writes only the feed, to stdout")
    parser.add_argument("--feed-url", metavar="URL", help="the feed's public URL, for its self link")
    args = parser.parse_args(argv)

    def body() -> int:
        for option, value in (("--html", args.html), ("--feed", args.feed)):
            if value == "":
                raise ConfigError(f"{option} needs a file name, or - for it alone on stdout")
        if args.html == args.feed == "-":
            raise ConfigError("--html - and --feed - cannot both have stdout: write one of them to a file")
        if args.feed_url is not None and not args.feed:
            raise ConfigError("--feed-url goes with --feed")
        if not 1 <= args.days <= model.MAX_DAYS:
            raise ConfigError(f"--days must be from 1 to {model.MAX_DAYS}, not {args.days}")
        feed_url = feed.check_url(args.feed_url) if args.feed_url is not None else None
        html_file = _writable(args.html) if args.html and args.html != "-" else None
        feed_file = _writable(args.feed, "--feed") if args.feed and args.feed != "-" else None
        report_wanted = args.feed != "-" or args.html  # `--feed -` alone needs no report (nor jobs file)
        by_job, note = schedules() if report_wanted else ({}, None)
        if report_wanted:
            model.plan_limit_bytes()  # a bad DB_PLAN_LIMIT_MB fails before connecting
        try:
            with db.connection() as con:
                schema.ensure(con)
                result = model.build(con, by_job, days=args.days, note=note) if report_wanted else None
                atom = feed.build(con, args.days, self_url=feed_url) if args.feed else None
        except Exception as exc:  # an SQL error is one line, never a traceback
            raise model.database_failure(exc, "reading the report") from None
        if feed_file:
            try:
                feed.write(feed_file, atom)
            except OSError as exc:
                raise ConfigError(f"--feed {args.feed}: cannot write it: {exc.strerror or exc}") from None
        if args.feed == "-":
            sys.stdout.buffer.write(atom)
        elif args.html == "-":
            sys.stdout.write(log.redact(render.html(result)))
        else:
            print(log.redact(render.text(result)), end="")
            if feed_file:
                print(f"Atom feed written to {args.feed}")
        if html_file:
            try:
                html_file.write_text(log.redact(render.html(result)), encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"--html {args.html}: cannot write it: {exc.strerror or exc}") from None
            if args.feed != "-":
                print(f"HTML report written to {args.html}")
        return 0

    return entry.run_command(body)


if __name__ == "__main__":
    sys.exit(main())
