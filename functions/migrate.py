"""Create or migrate the database schema (the Procfile's `release:` process on Heroku), or adopt
history kept elsewhere (shared/scrape/adopt.py, shared/scrape/urlwatch.py):

    python -m functions.migrate                                     # schema at version N
    python -m functions.migrate --adopt-seed NAME                   # the seed article's scraps table
    python -m functions.migrate --adopt-urlwatch URLS.yaml [CACHE.db] [--write]

Exit codes: 0 done, 1 database unreachable, 2 bad usage, configuration or database.
"""

import sys

from shared.app import adopt, entry, history_tools, schema, urlwatch
from shared.core import db, log


def main(argv: list[str] | None = None) -> int:
    parser = entry.argument_parser(
        prog="python -m functions.migrate", description="Create or migrate the database schema of $DATABASE_URL.",
        epilog="--adopt-urlwatch prints the [[scrape]] jobs it maps, as TOML with comments (what did not map is "
               "listed above each job); with --write it appends them to the jobs file ($JOBS_FILE, else "
               "./jobs.toml) instead. With CACHE.db it also imports the cache's snapshots into $DATABASE_URL. "
               "Both adoptions can be run again: they redo nothing.")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--adopt-seed", metavar="NAME",
                     help="adopt the seed article's scraps table into the [[scrape]] job NAME of the jobs file "
                          f"(the table is kept, renamed {adopt.SEED_KEPT})")
    how.add_argument("--adopt-urlwatch", nargs="+", metavar=("URLS.yaml", "CACHE.db"),
                     help="URLS.yaml [CACHE.db]: write [[scrape]] jobs for urlwatch's URL jobs and, given its "
                          "cache, import the cache's history")
    parser.add_argument("--write", action="store_true", help="with --adopt-urlwatch: append the jobs to the jobs file")
    args = parser.parse_args([] if argv is None else argv)
    if args.adopt_urlwatch and len(args.adopt_urlwatch) > 2:
        parser.error("--adopt-urlwatch takes URLS.yaml and, optionally, CACHE.db")
    if args.write and not args.adopt_urlwatch:
        parser.error("--write goes with --adopt-urlwatch")

    def body() -> int:
        if args.adopt_urlwatch:
            print(log.redact(urlwatch.adopt(*args.adopt_urlwatch, write=args.write)), end="")
            return 0
        job = history_tools.scrape_job(args.adopt_seed) if args.adopt_seed else None  # before connecting
        with db.connection() as con:
            if job:
                print(adopt.adopt_seed(con, job).line())
                return 0
            version = schema.migrate(con)
        print(f"schema at version {version}")
        return 0

    return entry.run_command(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
