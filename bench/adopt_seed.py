"""Adoption benchmark: `--adopt-seed` of the seed article's table whose current row holds a year,
and ten years, of 10-minute check times.

    make bench-adopt            (or: python -m bench.adopt_seed [--years 1 10] [--versions 24])

Uses $DATABASE_URL if set, else a throwaway local PostgreSQL. Each case builds the article's
`scraps` table (id, hash, body, seen_at timestamptz[]) in a fresh database: `--versions` older
rows of 50 check times each, and the current row with every 10-minute check of the years given;
then times `shared.app.adopt.adopt_seed` (one transaction) and reads the peak memory of this
process and of the PostgreSQL backend that ran it. Prints a Markdown table.
"""

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devtools import localpg
from shared.app import adopt
from shared.core import db
from shared.scrape.job import ScrapeJob

SEED_TABLE = """
CREATE TABLE scraps (id serial PRIMARY KEY, hash bytea NOT NULL UNIQUE, body text NOT NULL,
                     seen_at timestamptz[] NOT NULL)
"""
# Older versions first, 50 checks each, then the current one: every 10 minutes up to now.
FILL = """
INSERT INTO scraps (hash, body, seen_at)
SELECT sha256(convert_to(b, 'UTF8')), b, ts FROM (
    SELECT v, 'version ' || v || repeat(' agenda line', 150) AS b,
           CASE WHEN v < :versions
                THEN ARRAY(SELECT now() - CAST(:span AS interval) - interval '10 minutes' * (50 * (:versions - v) - i)
                           FROM generate_series(0, 49) i)
                ELSE ARRAY(SELECT now() - CAST(:span AS interval) + interval '10 minutes' * i
                           FROM generate_series(0, CAST(extract(epoch FROM CAST(:span AS interval)) / 600 AS int)) i)
           END AS ts
    FROM generate_series(0, :versions) v) AS rows
ORDER BY v
"""


def backend_peak_kb(con) -> int | None:
    """VmHWM of the PostgreSQL backend serving `con` (same machine only), in kB."""
    pid = con.run("SELECT pg_backend_pid()")[0][0]
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def case(url: str, years: int, versions: int) -> dict:
    admin = db.connect(url, statement_timeout="0")
    name = f"bench_adopt_{years}"
    admin.run(f"DROP DATABASE IF EXISTS {name}")
    admin.run(f"CREATE DATABASE {name}")
    admin.close()
    parts = urlsplit(url)
    target = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        con = db.connect(target, statement_timeout="0")
        con.run(SEED_TABLE)
        con.run(FILL, versions=versions, span=f"{365 * years} days")
        con.run("VACUUM ANALYZE scraps")
        current = con.run("SELECT max(cardinality(seen_at)) FROM scraps")[0][0]
        con.close()

        # As the command runs it: a connection with the default statement timeout.
        con = db.connect(target)
        started = time.perf_counter()
        done = adopt.adopt_seed(con, ScrapeJob(name="agenda", url="https://example.org/agenda"))
        seconds = time.perf_counter() - started
        backend = backend_peak_kb(con)
        con.close()
        return {"years": years, "current": current, "times": done.check_times, "versions": done.versions,
                "seconds": seconds, "backend_kb": backend}
    finally:
        admin = db.connect(url, statement_timeout="0")
        admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--years", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--versions", type=int, default=24, help="older rows, 50 check times each")
    args = parser.parse_args()

    url, pgdata = os.environ.get("DATABASE_URL"), None
    if not url:
        folder = Path(tempfile.mkdtemp(prefix="bench-adopt-"))
        folder.chmod(0o755)
        pgdata = folder / "pgdata"
        url = localpg.ensure_server(pgdata)
    try:
        rows = [case(url, years, args.versions) for years in args.years]
    finally:
        if pgdata:
            localpg.stop_server(pgdata)

    print("| seed table | check times (current row) | adopted | time | peak RSS, this process | peak RSS, backend |")
    print("|---|---|---|---|---|---|")
    ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in rows:
        backend = f"{r['backend_kb'] / 1024:.0f} MB" if r["backend_kb"] else "n/a"
        print(f"| {r['years']} year{'s' if r['years'] != 1 else ''}, {args.versions + 1} rows |"
              f" {r['times']:,} ({r['current']:,}) | {r['versions']} versions | {r['seconds']:.2f} s |"
              f" {ours:.0f} MB (whole run) | {backend} |")


if __name__ == "__main__":
    main()
