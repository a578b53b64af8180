"""Scrape memory benchmark: peak RSS of one run over large pages, against the scrape Lambda's 512 MB.

    python -m bench.scrape_memory [--pages 150] [--mb 4] [--concurrency 48]

Serves `pages` different pages of `mb` MB each on loopback (text, as a big agenda or data page
would be), runs `python -m functions.scrape` over them in a child process against a throwaway
local PostgreSQL (or $DATABASE_URL), twice (first run: every page new; second: every page
changed), and reports the child's peak RSS (ru_maxrss) and wall time. Prints Markdown rows.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devtools import localpg

ROOT = Path(__file__).resolve().parent.parent


def serve(pages: int, size: int) -> tuple[ThreadingHTTPServer, dict]:
    """Pages of `size` bytes, different per page and per generation (a second run sees changes)."""
    state = {"generation": 0, "text": ""}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            line = f"{self.path} generation {state['generation']}: a line of a large page {state['text']}\n".encode()
            body = (line * (size // len(line) + 1))[:size]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


def run(jobs: Path, database_url: str, concurrency: int) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "functions.scrape", "--concurrency", str(concurrency)],
                          cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "JOBS_FILE": str(jobs), "DATABASE_URL": database_url})
    wall = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB; the largest child so far
    if done.returncode != 0:
        raise SystemExit(f"scrape failed ({done.returncode}): {done.stderr[-2000:]}")
    outcomes = sorted({line.rsplit(": ", 1)[-1] for line in done.stdout.splitlines()})
    return wall, (peak if peak > before else before) / 1024, ",".join(outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape_memory")
    parser.add_argument("--pages", type=int, default=150)
    parser.add_argument("--mb", type=float, default=4)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--text", choices=("ascii", "emoji"), default="emoji",
                        help="emoji: non-BMP characters, which Python holds in 4 bytes each (the worst case)")
    args = parser.parse_args()
    server, state = serve(args.pages, int(args.mb * 1024 * 1024))
    state["text"] = "Zürich café 🙂" if args.text == "emoji" else ""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as work:
        os.chmod(work, 0o755)  # the postgres user must reach the data folder when we are root
        pgdata = Path(work) / "pgdata"
        database_url = os.environ.get("DATABASE_URL") or localpg.ensure_server(pgdata)
        try:
            jobs = Path(work) / "jobs.toml"
            jobs.write_text("".join(f'[[scrape]]\nname = "page{i}"\nurl = "http://127.0.0.1:{server.server_port}/p{i}"\n'
                                    for i in range(args.pages)))
            print("| case | wall | peak RSS | outcomes |\n|---|---|---|---|")
            for label in ("first run (all new)", "second run (all changed)"):
                wall, peak, outcomes = run(jobs, database_url, args.concurrency)
                print(f"| {args.pages} pages of {args.mb:g} MB ({args.text}), {label} | {wall:.1f} s | {peak:.0f} MB | {outcomes} |",
                      flush=True)
                state["generation"] += 1
        finally:
            if not os.environ.get("DATABASE_URL"):
                localpg.stop_server(pgdata)
    server.shutdown()


if __name__ == "__main__":
    main()
