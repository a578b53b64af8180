"""Run a Lambda handler on this machine with a sample event: `make invoke-local`.

    python -m devtools.invoke_local scrape [--event events/x.json] [--url URL]

With nothing configured it needs no network and no database: without DATABASE_URL it
starts a local PostgreSQL keeping its data in .local/pgdata (git-ignored, so history
survives between runs); without JOBS_FILE it serves the bundled demo page (and a CARTO
emulator) on loopback and runs events/jobs.demo.toml with their addresses written in, as
.local/jobs.demo.<pid>.toml (removed after the run). `--url` checks that page instead (a manual invoke event).
Like EventBridge Scheduler, it replaces `<aws.scheduler.scheduled-time>` in the event with
the current time, so each run is a new scheduled run.
"""

import argparse
import importlib
import json
import os
import sys
import threading
from datetime import datetime, timezone
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devtools import localpg
from shared.app import entry
from shared.app.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent


def serve_demo_site() -> str:
    """Serve devtools/demo/ on a free loopback port for the rest of this process."""
    handler = partial(_QuietHandler, directory=str(ROOT / "devtools" / "demo"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/page.html"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve_carto_emulator(load_example: bool) -> tuple[str, str]:
    """A CARTO SQL API emulator on loopback backed by $DATABASE_URL, with the bikeways example
    loaded (idempotently) when asked; returns its SQL API endpoint and demo API key."""
    from devtools.carto_emulator import CartoEmulator
    from shared.core import db

    if load_example:
        con = db.connect()
        try:
            con.run("SELECT pg_advisory_lock(hashtext('invoke-local: bikeways example'))")  # one loader at a time
            for name in ("schema.sql", "sample_data.sql"):
                con.run((ROOT / "examples" / "bikeways" / name).read_text())
        finally:
            con.close()  # which releases the lock
    key = "demo-master-key"
    emulator = CartoEmulator(os.environ["DATABASE_URL"], {"demo": key})
    emulator.start()
    return emulator.sql_url("demo"), key


def demo_jobs_file(addresses: dict[str, str]) -> Path:
    """events/jobs.demo.toml with these loopback addresses written in, as .local/jobs.demo.toml.
    Written in rather than read as ${VARIABLE}s: what a ${VARIABLE} brings in is a secret,
    shown as *** in results and the report, and a demo page's address is not one."""
    text = (ROOT / "events" / "jobs.demo.toml").read_text()
    for name, value in addresses.items():
        text = text.replace(f'"${{{name}}}"', json.dumps(value))  # only as a value, not in comments
    out = ROOT / ".local" / f"jobs.demo.{os.getpid()}.toml"  # one per run: two runs at once each have their own
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    return out


def load_event(path: str, url: str | None) -> dict:
    if url:
        return {"url": url}
    text = (ROOT / path).read_text() if not Path(path).is_absolute() else Path(path).read_text()
    # Microseconds keep two quick local runs apart; Scheduler itself sends whole seconds.
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.loads(text.replace("<aws.scheduler.scheduled-time>", now))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make invoke-local")
    parser.add_argument("function", help="a job kind's command in functions/: " + ", ".join(k.command for k in KINDS.values()))
    parser.add_argument("--event", help="event JSON file (default: a sample from events/)")
    parser.add_argument("--url", help="check this page instead (scrape only)")
    args = parser.parse_args(argv)
    sample = f"events/scheduler-{args.function}.json"  # every kind has one
    if not args.event and not (ROOT / sample).exists():
        parser.error(f"no sample event for {args.function!r}: give EVENT=events/...json")
    return entry.run_command(lambda: _invoke(args.function, args.event or sample, args.url))


def _invoke(function: str, event_path: str, url: str | None) -> int:
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = localpg.ensure_server(ROOT / ".local" / "pgdata")
        print("using the local PostgreSQL in .local/pgdata (set DATABASE_URL to use another)", file=sys.stderr)
    demo_file = None
    if not os.environ.get("JOBS_FILE"):
        # The demo file's [[refresh]] job needs the emulator even when only scrape runs.
        carto_url, os.environ["DEMO_CARTO_API_KEY"] = serve_carto_emulator(load_example=function == "carto_refresh")
        demo_file = demo_jobs_file({"DEMO_URL": serve_demo_site(), "DEMO_CARTO_SQL_API_URL": carto_url})
        os.environ["JOBS_FILE"] = str(demo_file)
    event = load_event(event_path, url)
    print(f"event: {json.dumps(event)}", file=sys.stderr)

    module = importlib.import_module(f"functions.{function}")
    try:
        result = module.handler(event, None)
    except Exception as exc:  # the edge: show what Lambda would record as the error
        print(f"handler raised {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if demo_file:  # this run's own: gone with it, and no later run in this process points at it
            demo_file.unlink(missing_ok=True)
            os.environ["JOBS_FILE"] = ""
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
