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

from shared import config, db, events, log, scrape, secrets, shard

logger = logging.getLogger("scrape")


class ChecksFailed(RuntimeError):
    """Raised by the Lambda handler after storing a run in which some target failed, so the
    invocation counts as an error (metrics, alarms, and a retry that skips what succeeded)."""


def handler(event, context):
    log.setup()
    secrets.load()
    results = []
    for request in events.parse_all(event):  # one, or one per SQS record from the dispatcher
        jobs = scrape.resolve_jobs(request.jobs, request.url, request.name)
        results += scrape.run(jobs, run_key=request.run_key)
    for result in results:
        logger.info(result.line())
    failed = [r.line() for r in results if r.failed]
    if failed:
        raise ChecksFailed(f"{len(failed)} of {len(results)} targets failed: " + "; ".join(failed))
    return {"results": [r.__dict__ for r in results]}


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
