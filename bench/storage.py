"""Storage benchmark: the cost of recording one check, with an empty and a 100,000-check history.

    make bench-storage          (or: python -m bench.storage [--history 100000] [--checks 300])

Uses $DATABASE_URL if set, else a throwaway local PostgreSQL. Measures our segmented
storage (shared/scrape/store.py) and, for comparison, the seed article's single ever-growing
array, on the same server in the same run. Prints a Markdown table.
"""

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from devtools import localpg
from shared.app import schema
from shared.core import db
from shared.scrape import store

SEED_TABLE = """
DROP TABLE IF EXISTS seed_scraps;
CREATE TABLE seed_scraps (id serial PRIMARY KEY, hash bytea NOT NULL UNIQUE, body text NOT NULL,
                          seen_at timestamptz[] NOT NULL)
"""
SEED_UPSERT = """
WITH body AS (SELECT CAST(:body AS text) AS txt)
INSERT INTO seed_scraps (hash, body, seen_at)
    SELECT sha256(convert_to(txt, 'UTF8')), txt, ARRAY[CAST(:ts AS timestamptz)] FROM body
  ON CONFLICT (hash) DO UPDATE SET seen_at = seed_scraps.seen_at || EXCLUDED.seen_at
"""

BODY = "<html><body>" + "A council agenda line. " * 100 + "</body></html>"  # ~2 kB page


def fill_history(con, name: str, checks: int, start: datetime) -> None:
    """Give target `name` exactly the rows `checks` calls of record_check would leave
    (same content, one check every 10 minutes), written in bulk to save time."""
    store.record_check(con, name, "http://bench/", BODY, start)
    content_id = con.run("SELECT last_content_id FROM scrape_targets WHERE name = :n", n=name)[0][0]
    con.run("""
        INSERT INTO scrape_seen (content_id, segment, seen_at)
        SELECT :cid, i / :size, array_agg(CAST(:start AS timestamptz) + i * interval '10 minutes' ORDER BY i)
        FROM generate_series(0, :checks - 1) i GROUP BY i / :size
        ON CONFLICT (content_id, segment) DO UPDATE SET seen_at = EXCLUDED.seen_at
    """, cid=content_id, size=store.SEGMENT_SIZE, start=start, checks=checks)
    con.run("UPDATE scrape_contents SET checks = :checks, last_seen = :last WHERE id = :cid",
            checks=checks, last=start + timedelta(minutes=10 * (checks - 1)), cid=content_id)
    con.run("VACUUM ANALYZE scrape_seen")


def time_checks(cases: dict, n: int, start: datetime) -> dict:
    """Median seconds per call for each case's record(ts), n calls each. The cases take turns
    call by call, so a slow moment of a shared machine hits them alike."""
    samples = {name: [] for name in cases}
    for i in range(n):
        ts = start + timedelta(minutes=10 * i)
        for name, record in cases.items():
            t0 = time.perf_counter()
            record(ts)
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(times) for name, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--checks", type=int, default=300, help="timed checks per case")
    args = parser.parse_args()

    url, pgdata = os.environ.get("DATABASE_URL"), None
    if not url:
        folder = Path(tempfile.mkdtemp(prefix="bench-storage-"))
        folder.chmod(0o755)
        pgdata = folder / "pgdata"
        url = localpg.ensure_server(pgdata)
    try:
        run(url, args)
    finally:
        if pgdata:
            localpg.stop_server(pgdata)


def run(url: str, args) -> None:
    con = db.connect(url, statement_timeout="0")
    schema.ensure(con)
    con.run("DELETE FROM scrape_targets WHERE name LIKE 'bench-%'")
    later = datetime(2030, 1, 1, tzinfo=timezone.utc)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)

    # Ours: a fresh target (0 recorded checks) and one with --history checks of the same content.
    fill_history(con, "bench-long", args.history, start)
    ours = time_checks({
        "fresh": lambda ts: store.record_check(con, "bench-fresh", "http://bench/", BODY, ts),
        "long": lambda ts: store.record_check(con, "bench-long", "http://bench/", BODY, ts),
    }, args.checks, later)
    fresh, long = ours["fresh"], ours["long"]
    total = con.run("SELECT cardinality(seen_at) FROM scraps WHERE target = 'bench-long'")[0][0]
    assert total == args.history + args.checks, total

    # The seed's design: one row, one array holding every check time (two tables, so that
    # they too can take turns: the fresh array starts empty, the long one with --history).
    for table in ("seed_fresh", "seed_long"):
        con.run(SEED_TABLE.replace("seed_scraps", table))
    con.run("""INSERT INTO seed_long (hash, body, seen_at)
               SELECT sha256(convert_to(:b, 'UTF8')), :b,
                      array_agg(CAST(:start AS timestamptz) + i * interval '10 minutes' ORDER BY i)
               FROM generate_series(0, :n - 1) i""", b=BODY, start=start, n=args.history)
    con.run("VACUUM ANALYZE seed_long")
    seed = time_checks({
        table: (lambda ts, table=table: con.run(SEED_UPSERT.replace("seed_scraps", table), body=BODY, ts=ts))
        for table in ("seed_fresh", "seed_long")
    }, args.checks, later)
    seed_fresh, seed_long = seed["seed_fresh"], seed["seed_long"]
    con.run("DROP TABLE seed_fresh, seed_long")
    con.run("DELETE FROM scrape_targets WHERE name LIKE 'bench-%'")
    con.close()

    ms = lambda s: f"{s * 1000:.2f} ms"  # noqa: E731
    print(f"| storage | per check, 0 checks recorded | per check, {args.history:,} recorded | ratio |")
    print("|---|---|---|---|")
    print(f"| ours: segments of {store.SEGMENT_SIZE} | {ms(fresh)} | {ms(long)} | {long / fresh:.2f} |")
    print(f"| seed: one growing array | {ms(seed_fresh)} | {ms(seed_long)} | {seed_long / seed_fresh:.2f} |")
    print(f"\nmedian of {args.checks} checks each, the two cases of a row taking turns; ours is one transaction"
          " (target lock, idempotency key, content upsert, segment append)")


if __name__ == "__main__":
    main()
