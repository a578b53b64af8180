"""Refresh benchmark: the worst answers for memory and time, with the peak RSS of each.

    python -m bench.refresh_memory [--carto-mb 45] [--pg-rows 1000000] [--budget 6] [--skip-before]

Three cases, each run in a fresh child process whose peak RSS is measured (its VmHWM, read by
the child at the end: the ru_maxrss os.wait4 gives would count the parent's pages, which the
child has mapped between fork and exec), against servers on this machine:

- a 45 MB CARTO SQL API answer (CARTO-like rows: id, hex WKB geometry, name), on loopback;
- an answer that trickles in (a byte or so every few hundred milliseconds, about 40 s in all)
  with a 6 s time budget;
- a million-row PostgreSQL refresh (`mode = "postgres"`) on a throwaway local PostgreSQL
  (devtools/localpg.py), or on $DATABASE_URL if set.

"after" runs our client (shared/refresh); "before" runs what it did before: requests without
stream and `response.json()`, pg8000's `run()` of the whole statement. Prints a Markdown table.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_SQL = "SELECT g AS cartodb_id, md5(g::text) AS name FROM generate_series(1, {rows}) g"
KEY = "bench-key-0000"
TRICKLE_PAUSE = 0.4  # seconds between two writes of the trickling answer
TRICKLE_BYTES = 4  # bytes per write: 400 bytes take 40 s


def big_answer(megabytes: float) -> bytes:
    """A v2 answer of about `megabytes` MB: rows as CARTO sends a table's (the geometry as hex WKB)."""
    wkb = "0101000020E6100000" + "0" * 32
    rows, size, i = [], 0, 0
    while size < megabytes * 1_000_000:
        row = json.dumps({"cartodb_id": i, "the_geom": wkb, "name": f"segment {i}", "suggestions": i % 7})
        rows.append(row)
        size += len(row) + 1
        i += 1
    fields = {"cartodb_id": {"type": "number", "pgtype": "int4"}, "the_geom": {"type": "geometry"},
              "name": {"type": "string", "pgtype": "text"}, "suggestions": {"type": "number", "pgtype": "int4"}}
    return ('{"rows":[' + ",".join(rows) + '],"time":2.5,"fields":' + json.dumps(fields)
            + f',"total_rows":{len(rows)}}}').encode()


TRICKLE_ANSWER = json.dumps({"rows": [{"process_data": 4}], "time": 0.01,
                             "fields": {"process_data": {"type": "number", "pgtype": "int4"}}, "total_rows": 1,
                             "notices": ["rebuilt bikeways_demand from bikeways_input: " + "." * 250]}).encode()


def serve(big: bytes) -> tuple[ThreadingHTTPServer, threading.Event]:
    """/user/big/... answers `big` at once, /user/trickle/... TRICKLE_ANSWER a few bytes at a time."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = big if self.path.startswith("/user/big/") else TRICKLE_ANSWER
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if body is big:
                    self.wfile.write(body)
                    return
                for start in range(0, len(body), TRICKLE_BYTES):
                    if stop.wait(TRICKLE_PAUSE):
                        break
                    self.wfile.write(body[start:start + TRICKLE_BYTES])
            except OSError:  # the client gave up
                pass
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, stop


# -- one case, in a child process -----------------------------------------------------------------

def child(case: str, code: str, target: str, budget: float) -> dict:
    """Run one case; what it said. Imports come first, so the baseline is what a run costs
    before any answer."""
    import requests

    from shared.core import db
    from shared.refresh import carto, postgres
    from shared.refresh.job import RefreshJob

    baseline = _vm("VmRSS")
    started = time.monotonic()
    try:
        if case == "postgres":
            sql = target.split("|", 1)[1]
            url = target.split("|", 1)[0]
            if code == "before":
                con = db.connect(url, statement_timeout="0")
                answer = con.run(sql)
                said = f"{len(answer):,} rows fetched"
                con.close()
            else:
                job = RefreshJob(name="pg", mode="postgres", database_url=url, sql=sql, time_budget=budget)
                said = postgres.refresh(job, started + budget, carto.Timing()).summary()
        elif code == "before":
            response = requests.post(target, data={"q": "SELECT process_data()", "api_key": KEY}, timeout=(10, 60))
            body = response.json()
            said = f"HTTP {response.status_code}, {len(body.get('rows', [])):,} rows parsed"
        else:
            job = RefreshJob(name="bench", api_key=KEY, sql_api_url=target, time_budget=budget)
            said = carto.refresh(job, started + budget).summary()
    except Exception as exc:  # noqa: BLE001 - what happened is the result
        said = f"error: {getattr(exc, 'reason', None) or exc}"
    return {"said": said, "seconds": time.monotonic() - started, "baseline_kb": baseline, "hwm_kb": _vm("VmHWM")}


def _vm(field: str) -> int | None:
    """A field of /proc/self/status, in kB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def measure(case: str, code: str, target: str, budget: float) -> dict:
    """Run the case in a fresh interpreter; its report, with its peak RSS."""
    done = subprocess.run([sys.executable, "-m", "bench.refresh_memory", "--child", case, code, target,
                           str(budget)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{case} / {code} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["hwm_kb"] is None:
        raise SystemExit("no /proc/self/status here: this benchmark reads VmHWM (Linux)")
    report["peak_kb"] = report["hwm_kb"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--carto-mb", type=float, default=45)
    parser.add_argument("--pg-rows", type=int, default=1_000_000)
    parser.add_argument("--budget", type=float, default=6, help="time budget of the trickle case, seconds")
    parser.add_argument("--skip-before", action="store_true",
                        help="only our client (the trickle's 'before' takes 44 s)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, code, target, budget = args.child
        print(json.dumps(child(case, code, target, float(budget))))
        return

    from devtools import localpg

    url, pgdata = os.environ.get("DATABASE_URL"), None
    if not url:
        folder = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
        folder.chmod(0o755)
        pgdata = folder / "pgdata"
        url = localpg.ensure_server(pgdata)
    big = big_answer(args.carto_mb)
    server, stop = serve(big)
    base = f"http://127.0.0.1:{server.server_port}"
    cases = [
        (f"CARTO answer of {len(big) / 1e6:.0f} MB", "carto", f"{base}/user/big/api/v2/sql", 120.0),
        (f"CARTO answer trickling in ({len(TRICKLE_ANSWER)} bytes in"
         f" {len(TRICKLE_ANSWER) / TRICKLE_BYTES * TRICKLE_PAUSE:.0f} s), time budget {args.budget:g} s",
         "carto", f"{base}/user/trickle/api/v2/sql", args.budget),
        (f"PostgreSQL refresh of {args.pg_rows:,} rows", "postgres", f"{url}|{PG_SQL.format(rows=args.pg_rows)}",
         300.0),
    ]
    results = []
    try:
        for title, case, target, budget in cases:
            for code in (("before",) if not args.skip_before else ()) + ("after",):
                report = measure(case, code, target, budget)
                results.append((title, code, report))
                print(f"  {title} / {code}: {report['said'][:100]} ({report['seconds']:.1f} s,"
                      f" {report['peak_kb'] / 1024:.0f} MB)", file=sys.stderr)
    finally:
        stop.set()
        server.shutdown()
        if pgdata:
            localpg.stop_server(pgdata)
            shutil.rmtree(pgdata.parent, ignore_errors=True)

    print("| case | code | what it said | wall time | peak RSS | of which interpreter and imports |")
    print("|---|---|---|---|---|---|")
    for title, code, report in results:
        said = report["said"].replace("|", "\\|")
        said = said if len(said) <= 220 else said[:217] + "..."
        baseline = f"{report['baseline_kb'] / 1024:.0f} MB" if report.get("baseline_kb") else "?"
        seconds = f"{report['seconds']:.1f} s" if "seconds" in report else "?"
        print(f"| {title} | {code} | {said} | {seconds} | {report['peak_kb'] / 1024:.0f} MB | {baseline} |")
    print(f"\n{sys.executable}; peak RSS: the child process's VmHWM")


if __name__ == "__main__":
    main()
