"""One entry adapter for both platforms: trigger, request, `kind.run`, result lines.

    functions/scrape.py:   handler = entry.lambda_handler("scrape")
                           def main(argv=None): return entry.command_line("scrape", argv)

The command line (Heroku Scheduler, a terminal) and Lambda differ only in how a request
arrives (argv, or an event: shared/app/events.py) and how results leave (lines on
stdout and an exit code, or one log record per result and an exception when the run must be
retried). Deadlines, secrets, logging and exit codes are written here once, and `JobError`
is caught here once.
"""

import json
import logging
import os
import sys
import time
from collections.abc import Callable

from shared.app import config, events, kinds, monitor, schema
from shared.core import errors, log, numbers, secrets, shard
from shared.core.errors import ConfigError, JobError
from shared.core.kind import Kind, Run
from shared.core.result import INVALID, Result, exit_code

logger = logging.getLogger("run")

LAMBDA_MARGIN = 10.0  # seconds kept back from Lambda's timeout to write, report and return
# Heroku Scheduler stops a one-off dyno after about its interval, 10 minutes at the shortest:
# on a dyno, a run without a budget of its own ends within 9.
HEROKU_BUDGET = 540.0


class RunFailed(JobError):
    """Raised in Lambda after every result is logged, when the run must be tried again (a
    check not stored, a refresh that failed) or a job could not be used: the invocation then
    counts as an error (metrics, retries, the dead-letter queue)."""


# --- the run, whatever the platform -------------------------------------------------------

def run_request(kind: Kind, request: events.Request, deadline: float | None,
                options: dict[str, str] | None = None) -> list[Result]:
    """The jobs the request names, run: one Result per job, the unusable ones as `invalid`.
    `options`: the kind's command-line options that were given, by name."""
    jobs, invalid = resolve(kind, request)
    if not jobs:
        return invalid
    results = kind.run(jobs, Run(request.run_key, deadline, options or {}, prepare=schema.ensure))
    monitor.job_heartbeats(jobs, results, deadline)
    return invalid + results


def monitored(kind: Kind, ends: Callable[[], float | None], body: Callable[[float | None], list[Result]],
              frequent: bool = True) -> list[Result]:
    """`body(deadline)`'s results, with the run's heartbeats and run-level alerts around it
    (shared/app/monitor.py): a run that fails as a whole, its time budget's setting included, is
    heard about, then raises as before. `ends()` gives the run's deadline."""
    try:
        end = ends()
    except JobError as exc:
        monitor.RunMonitor(kind, None, frequent).failed(exc)
        raise
    watch = monitor.RunMonitor(kind, end, frequent)
    watch.start()
    try:
        results = body(end)
    except BaseException as exc:
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            watch.failed(exc)
        raise
    watch.finished(results)
    return results


def resolve(kind: Kind, request: events.Request) -> tuple[list, list[Result]]:
    """Build the jobs of a request. A job whose configuration is wrong (an unset ${VAR}, a bad
    key) becomes an `invalid` result, and the others still run; a wrong request (an unknown
    job name, an ad-hoc URL for a kind without them) is a ConfigError."""
    if request.url:
        if request.jobs or request.shard:
            raise ConfigError("give either a URL or job names / a shard, not both")
        if not kind.adhoc:
            raise ConfigError(f"a {kind.name} run takes job names ({{\"job\": NAME}} or --job), not a url")
        table = kind.adhoc(request.url, request.name)
        entries = [config.Entry(kind.name, table["name"], table, "ad-hoc target")]
    else:
        entries, source = config.kind_entries(kind)
        if not entries:
            raise ConfigError(_nothing_to_run(kind, source))
        entries = config.select(entries, request.jobs, kind.name, source)
        if request.every or request.at:
            entries = config.on_schedule(entries, kind, request.every, request.at, source)
        if request.shard:
            entries = shard.select(entries, *request.shard)
    jobs, invalid = [], []
    for entry in entries:
        try:
            jobs.append(config.build(entry))
        except ConfigError as exc:
            invalid.append(Result(entry.name, INVALID, log.redact(str(exc))))
    return jobs, invalid


def _nothing_to_run(kind: Kind, source: str) -> str:
    if not config.has_jobs_file() and not os.environ.get("JOBS_FILE"):
        where = f"no jobs file at {config.jobs_file_path()} (set JOBS_FILE or JOBS_TOML)"
    else:
        where = f"{source} has no [[{kind.name}]] job"
    if kind.from_environment:
        where += f", and no job from the environment ({', '.join(kind.environment_keys)})"
    return f"nothing to run: {where}"


def time_budget(kind: Kind, given: float | None = None) -> float | None:
    """Seconds for the whole run: --time-budget, else $<KIND>_TIME_BUDGET, else HEROKU_BUDGET on a
    Heroku dyno ($DYNO), else none."""
    variable = f"{kind.name.upper()}_TIME_BUDGET"
    if given is not None:
        value, source = given, "--time-budget"
    elif os.environ.get(variable):
        source = variable
        try:
            value = numbers.decimal(os.environ[variable], variable, 0, 7 * 86400, " of seconds")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    else:
        return HEROKU_BUDGET if os.environ.get("DYNO") else None
    if not 0 < value < float("inf"):
        raise ConfigError(f"{source} {value:g} must be a positive number of seconds")
    return value


def deadline(budget: float | None, context=None) -> float | None:
    """The time.monotonic() by which the run must be over: the budget's end, and in Lambda the
    invocation's end less LAMBDA_MARGIN (at most half the time left)."""
    ends = [time.monotonic() + budget] if budget else []
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is not None:
        remaining = remaining_ms() / 1000
        ends.append(time.monotonic() + remaining - min(LAMBDA_MARGIN, remaining / 2))
    return min(ends, default=None)


# --- Lambda -------------------------------------------------------------------------------

def lambda_handler(command: str) -> Callable:
    """The Lambda handler of a kind's command."""
    def handler(event, context):
        return handle(command, event, context)
    handler.__doc__ = f"Lambda handler of functions.{command}: see shared/app/entry.py."
    return handler


def lambda_call(body: Callable[[], object]):
    """A Lambda handler's body with logging and secrets set up; a JobError is logged as its one
    line, then raised (the invocation counts as an error)."""
    log.setup()
    try:
        secrets.load()
        return body()
    except JobError as exc:
        logger.error("%s", log.redact(str(exc)))
        raise


def handle(command: str, event, context) -> dict:
    kind = kinds.by_command(command)

    def run_all() -> list[Result]:
        def requests(end: float | None) -> list[Result]:
            results = []
            for request in events.parse_all(event):  # one, or one per SQS record from the dispatcher
                results += run_request(kind, request, end)
            return results

        return monitored(kind, lambda: deadline(time_budget(kind), context), requests)

    results = lambda_call(run_all)
    for result in results:
        _log_result(result)
    again = [r for r in results if r.retry or r.outcome == INVALID]
    if again:
        raise RunFailed(log.redact(f"{len(again)} of {len(results)} {kind.name} jobs failed: "
                                   + "; ".join(r.line() for r in again)))
    return {"results": [log_record(r) for r in results], "failed": sum(r.failed for r in results)}


def _log_result(result: Result) -> None:
    level = logging.WARNING if result.failed else logging.INFO
    logger.log(level, "%s", log.redact(result.line()), extra=log_record(result))


def log_record(result: Result) -> dict:
    """A result's fields, redacted, as log `extra` and in Lambda's answer."""
    fields = {"job": result.name, "outcome": result.outcome,
              "reason": log.redact(result.reason) if result.reason else None,
              "notice": log.redact(result.notice) if result.notice else None,
              "duration": round(result.seconds, 3) if result.seconds is not None else None}
    return {key: value for key, value in fields.items() if value is not None}


# --- the command line ---------------------------------------------------------------------

def argument_parser(check_text: bool = True, **options):
    """The argparse parser of every command: a usage error is one line and exit 2 (argparse
    prints the usage, then the error), and with `check_text` every text argument, positional
    ones included, is checked as an event's value is (argv may carry undecodable bytes as lone
    surrogates)."""
    import argparse  # here, not at the top: a Lambda cold start never needs it

    labels: dict[str, str] = {}  # dest -> how the user wrote it (--job, NAME), subcommands' too

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message):
            print(f"error: {log.redact(message)} (see --help)", file=sys.stderr)
            raise SystemExit(errors.USAGE)

        def add_argument(self, *names, **settings):
            action = super().add_argument(*names, **settings)
            labels[action.dest] = action.option_strings[0] if action.option_strings else \
                (action.metavar if isinstance(action.metavar, str) else action.dest.upper())
            return action

        def parse_args(self, args=None, namespace=None):
            parsed = super().parse_args(args, namespace)
            for dest, value in vars(parsed).items() if check_text else ():
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, str) and item:  # an empty one is the command's to refuse
                        try:
                            events.argument(item, labels.get(dest, dest))
                        except ConfigError as exc:
                            self.error(str(exc))
            return parsed

    return OneLineParser(**options)


def command_line(command: str, argv: list[str] | None = None) -> int:
    """`python -m functions.<command> [options]`: the run's exit code."""
    kind = kinds.by_command(command)
    parser = argument_parser(
        check_text=False,  # checked in body(), as a run's request is
        prog=f"python -m functions.{command}", description=f"{kind.summary}: every [[{kind.name}]] job, or some.",
        epilog="Prints one line per job. Exit codes: 0 all done, 1 a job failed (the others still ran), "
               "2 bad usage or configuration.")
    parser.add_argument("--job", action="append", metavar="NAME", help="run only this job (repeatable)")
    if kind.adhoc:
        parser.add_argument("--url", help="check this one page instead of the jobs file")
        parser.add_argument("--name", help="name to store an ad-hoc --url under (default: from the URL)")
    parser.add_argument("--every", metavar="10m|1h|1d",
                        help="run only the jobs on this schedule (what `make heroku-schedule` prints for each entry)")
    parser.add_argument("--at", metavar="HH:MM|:MM", help="with --every 1d or 1h: the time of day, or minute")
    parser.add_argument("--run-key", help="idempotency key: a second run with the same key repeats nothing")
    parser.add_argument("--shard", metavar="I/N", help="run only shard I of N of the jobs (stable by job name)")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help=f"bound the whole run (default ${kind.name.upper()}_TIME_BUDGET)")
    for option in kind.options:
        parser.add_argument(option.flag, metavar="VALUE", help=option.help)
    args = parser.parse_args(argv)

    def body() -> int:
        options = {option.name: events.argument(getattr(args, option.name), option.flag) for option in kind.options
                   if getattr(args, option.name) is not None}
        name = events.argument(getattr(args, "name", None), "--name")
        request = events.Request(jobs=[events.argument(job, "--job") for job in args.job] if args.job else None,
                                 url=events.argument(getattr(args, "url", None), "--url"), name=name,
                                 run_key=events.argument(args.run_key, "--run-key"),
                                 every=events.argument(args.every, "--every"), at=events.argument(args.at, "--at"),
                                 shard=shard.parse(args.shard) if args.shard else None)
        frequent = not request.every or request.every == "10m"  # for the hourly rule of run-level alerts
        results = monitored(kind, lambda: deadline(time_budget(kind, args.time_budget)),
                            lambda end: run_request(kind, request, end, options), frequent)
        if not results and (request.every or request.at):  # an entry left when its jobs went
            print(f"nothing to run: no [[{kind.name}]] job on that schedule", file=sys.stderr)
        for result in results:
            if log.json_lines():  # one object per line, whatever a page's error text holds
                print(json.dumps({**log_record(result), "line": log.redact(result.line())}, ensure_ascii=False),
                      file=sys.stderr if result.outcome == INVALID else sys.stdout)
            elif result.outcome == INVALID:  # the reason names file, job and key
                print(f"error: {log.redact(result.reason)}", file=sys.stderr)
            else:
                print(log.redact(result.line()))
        return exit_code(results)

    return run_command(body)


def run_command(body: Callable[[], int]) -> int:
    """Run a command's body with logging and secrets set up; a JobError becomes its one line on
    stderr and its exit code, never a traceback."""
    log.setup()
    try:
        secrets.load()
        return body()
    except JobError as exc:
        print(f"error: {log.redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return errors.FAILED
    except BrokenPipeError:  # stdout closed early (`... | head`): nothing more to say, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush has somewhere to go
        return 0
