"""Check web pages and keep their history: `python -m functions.scrape` or a Lambda handler.

    python -m functions.scrape                      # every [[scrape]] job in $JOBS_FILE
    python -m functions.scrape --job a --job b      # some of them
    python -m functions.scrape --url URL [--name N] # one ad-hoc page
    python -m functions.scrape --shard 2/4          # a quarter of the jobs (one of 4 machines)

Prints one line per target; exits 0 if all were checked, 1 if any failed, 2 on bad usage
or configuration.
"""

import logging
import sys
import time

from shared import config, db, events, log, scrape, secrets, shard

logger = logging.getLogger("scrape")


class ChecksFailed(RuntimeError):
    """Raised by the Lambda handler, after storing everything else, when a check could not be
    stored or was not made for lack of time: the invocation then counts as an error and its
    retry (same run key) does only what is missing. A page that fails (404, DNS, timeout) is
    stored as that target's error and does not raise: retrying would not mend it, and
    `alert_after` says when it matters."""


def handler(event, context):
    log.setup()
    secrets.load()
    # Lambda's own timeout, less a margin: jobs that could not finish in time are not started.
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - 5 if context else None
    results = []
    for request in events.parse_all(event):  # one, or one per SQS record from the dispatcher
        jobs = scrape.resolve_jobs(request.jobs, request.url, request.name)
        results += scrape.run(jobs, run_key=request.run_key, deadline=deadline)
    for result in results:
        (logger.warning if result.failed else logger.info)(result.line())
    missing = [r.line() for r in results if r.missing]
    if missing:
        raise ChecksFailed(log.redact(f"{len(missing)} of {len(results)} checks are missing: " + "; ".join(missing)))
    return {"results": [r.__dict__ for r in results],
            "failed": sum(r.failed for r in results)}


def main(argv=None) -> int:
    import argparse  # here, not at the top: a Lambda cold start never needs it

    parser = argparse.ArgumentParser(prog="python -m functions.scrape", description=__doc__.split("\n")[0])
    parser.add_argument("--job", action="append", metavar="NAME", help="check only this job (repeatable)")
    parser.add_argument("--url", help="check this one page instead of the jobs file")
    parser.add_argument("--name", help="name to store an ad-hoc --url under (default: from the URL)")
    parser.add_argument("--run-key", help="idempotency key: a second run with the same key records nothing")
    parser.add_argument("--shard", metavar="I/N", help="check only shard I of N of the jobs (stable by job name)")
    parser.add_argument("--concurrency", type=int, help=f"parallel fetches (default: $SCRAPE_CONCURRENCY or {scrape.CONCURRENCY})")
    args = parser.parse_args(argv)
    log.setup()
    try:
        shard_spec = shard.parse(args.shard) if args.shard else None
        jobs = scrape.resolve_jobs(args.job, args.url, args.name, shard_spec)
        results = scrape.run(jobs, run_key=args.run_key, concurrency=args.concurrency)
    except (config.ConfigError, db.DatabaseConfigError, shard.ShardError) as exc:
        print(f"error: {log.redact(str(exc))}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"error: {log.redact(str(exc))}", file=sys.stderr)
        return 1
    for result in results:
        print(log.redact(result.line()))
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
