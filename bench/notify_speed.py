"""Notification speed: 500 changed pages, each notifying a JSON webhook that answers in 100 ms.

    python -m bench.notify_speed [--changes 500] [--delay 0.1] [--workers 8 ...] [--skip-serial]
                                 [--skip-hanging]

The webhook runs in a child process (a ThreadingHTTPServer: one thread per request, so it
answers requests in parallel, each after --delay seconds) and counts what it receives. Cases:

- serial: each change's messages sent one after another on the caller's thread (messages.send,
  what the write path did before the Outbox: the run waited for every answer);
- outbox, N workers: an Outbox (shared/notify/outbox.py) with N workers; "posting" is the time
  the run's writer is held (post() for every change), "total" runs until close() returns.

A case counts only if the webhook received every message and no notice came back. Then the
same changes to an SMTP server that accepts connections and never answers (a socket in this
process), through an Outbox of the default size with a 60 s deadline: how long close() takes,
and how many jobs got a notice. Prints Markdown tables; exits 0 either way (a report, not a
gate).
"""

import argparse
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def serve(delay: float) -> None:
    """The webhook (child process): prints its port, then serves until stdin closes."""
    received = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(delay)
            with lock:
                received[0] += 1
            self._answer(b"ok")

        def do_GET(self):  # /count: messages received so far
            with lock:
                self._answer(str(received[0]).encode())

        def _answer(self, body: bytes):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()


def received(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as answer:
        return int(answer.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds the webhook takes per answer")
    parser.add_argument("--workers", type=int, nargs="+", default=[8], help="Outbox sizes to measure")
    parser.add_argument("--skip-serial", action="store_true")
    parser.add_argument("--skip-hanging", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.delay)

    from shared.notify import messages
    from shared.notify.outbox import Outbox
    from shared.scrape.job import ScrapeJob

    child = subprocess.Popen([sys.executable, "-m", "bench.notify_speed", "--serve", "--delay", str(args.delay)],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        url = f"json://127.0.0.1:{port}/hook"
        jobs = [ScrapeJob(name=f"page-{i}", url=f"https://example.org/{i}", notify=(url,)) for i in range(args.changes)]
        check = messages.Check("changed", "2026-11-22T10:00:00+00:00", body="Item 1: budget\nItem 2: parks and libraries",
                             previous_body="Item 1: budget\nItem 2: parks")
        messages.deliver(url, messages.Message("warm-up", "import Apprise before timing"))
        rows = []

        def case(name, run):
            before = received(port)
            started = time.monotonic()
            posting, problems = run()
            total = time.monotonic() - started
            got = received(port) - before
            ok = got == args.changes and not problems
            rows.append((name, posting, total, got, "yes" if ok else f"no: {problems[:1]}"))
            print(f"{name}: {total:.1f} s", file=sys.stderr)

        def serial():
            problems = [f for each in jobs for message in messages.messages_for(each, check)
                        for f in messages.send(messages.urls_for(each), message)]
            return None, problems

        def outbox(workers):
            def run():
                started = time.monotonic()
                with Outbox(time.monotonic() + 600, workers=workers) as box:
                    for each in jobs:
                        box.post(each, check)
                    posting = time.monotonic() - started
                    return posting, list(box.close().values())
            return run

        if not args.skip_serial:
            case("serial (before: on the write path)", serial)
        for workers in args.workers:
            case(f"Outbox, {workers} workers", outbox(workers))
        hanging = None if args.skip_hanging else hanging_smtp(jobs, check)
    finally:
        child.stdin.close()
        child.wait(timeout=10)

    print(f"\n{args.changes} changes, one JSON webhook answering in {args.delay * 1000:.0f} ms\n")
    print("| sender | writer held (posting) | total (until close() returns) | messages received | all delivered |")
    print("|---|---|---|---|---|")
    for name, posting, total, got, ok in rows:
        held = f"{total:.1f} s" if posting is None else f"{posting:.2f} s"
        print(f"| {name} | {held} | {total:.1f} s | {got} | {ok} |")
    if hanging:
        total, notices, example = hanging
        print(f"\n{args.changes} changes to an SMTP server that never answers (Outbox, default size, 60 s deadline)\n")
        print("| close() returned after | jobs with a notice | e.g. |")
        print("|---|---|---|")
        print(f"| {total:.1f} s | {notices} | {example} |")


def hanging_smtp(jobs, check):
    """Every job's messages to one SMTP server that accepts and never says a word."""
    from dataclasses import replace

    from shared.notify.outbox import Outbox

    server = socket.create_server(("127.0.0.1", 0), backlog=128)
    held = []

    def accept():
        try:
            while True:
                held.append(server.accept())
        except OSError:  # closed
            return

    threading.Thread(target=accept, daemon=True).start()
    url = f"mailto://127.0.0.1:{server.getsockname()[1]}?from=w@example.org&to=o@example.org"
    started = time.monotonic()
    try:
        with Outbox(started + 60) as box:
            for each in jobs:
                box.post(replace(each, notify=(url,)), check)
            notices = box.close()
        total = time.monotonic() - started
    finally:
        server.close()
        for conn, _ in held:
            conn.close()
    print(f"hanging SMTP: {total:.1f} s", file=sys.stderr)
    examples = sorted(set(notices.values()))
    return total, len(notices), " / ".join(f"`{e}` ({list(notices.values()).count(e)})" for e in examples)


if __name__ == "__main__":
    main()
