"""Run refresh statements on CARTO or PostgreSQL: `python -m functions.carto_refresh` or a Lambda handler.

    python -m functions.carto_refresh                     # every [[refresh]] job (or the CARTO_* one)
    python -m functions.carto_refresh --job a --job b     # some of them
    python -m functions.carto_refresh --time-budget 300   # the whole run within 300 s

Prints one line per job; exits 0 if every refresh succeeded, 1 if any failed, 2 on bad usage
or configuration.
"""

import logging
import os
import sys
import time

from shared import config, db, events, log, refresh, secrets

logger = logging.getLogger("carto_refresh")


class RefreshFailed(RuntimeError):
    """Raised by the Lambda handler when a refresh failed, so the invocation counts as an error
    (metrics, alarms, the scheduler's retry)."""


def handler(event, context):
    log.setup()
    secrets.load()
    request = events.parse(event)
    if request.url:
        raise config.ConfigError("a refresh event names jobs ({\"job\": NAME}), not a url")
    jobs = refresh.resolve_jobs(request.jobs)
    results = refresh.run(jobs, deadline=refresh.deadline_for(context))
    failed = [r.line() for r in results if r.failed]
    if failed:
        raise RefreshFailed(log.redact(f"{len(failed)} of {len(results)} refreshes failed: " + "; ".join(failed)))
    return {"results": [r.__dict__ for r in results]}


def main(argv=None) -> int:
    import argparse  # here, not at the top: a Lambda cold start never needs it

    parser = argparse.ArgumentParser(prog="python -m functions.carto_refresh", description=__doc__.split("\n")[0])
    parser.add_argument("--job", action="append", metavar="NAME", help="run only this job (repeatable)")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="bound the whole run (default $REFRESH_TIME_BUDGET; each job also has its own)")
    args = parser.parse_args(argv)
    log.setup()
    if args.time_budget is not None and args.time_budget <= 0:
        parser.error("--time-budget must be a positive number of seconds")
    try:
        budget = args.time_budget if args.time_budget is not None else _env_budget()
        jobs = refresh.resolve_jobs(args.job)
    except (config.ConfigError, db.DatabaseConfigError) as exc:
        print(f"error: {log.redact(str(exc))}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + budget if budget else None
    results = refresh.run(jobs, deadline=deadline)
    for result in results:
        print(log.redact(result.line()))
    return 1 if any(r.failed for r in results) else 0


def _env_budget() -> float | None:
    value = os.environ.get("REFRESH_TIME_BUDGET")
    try:
        budget = float(value) if value else None
    except ValueError:
        budget = -1.0
    if budget is not None and budget <= 0:
        raise config.ConfigError(f"REFRESH_TIME_BUDGET={value!r} must be a positive number of seconds")
    return budget


if __name__ == "__main__":
    sys.exit(main())
