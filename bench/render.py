"""Rendering benchmark: N loopback pages written by JavaScript, rendered by both renderers of
shared/scrape/render.py, against a bare `chromium --headless --dump-dom` of the same pages in the
same run (the floor).

    make bench-render          (or: python -m bench.render [--pages 10])

Pages per minute (one browser at a time, the default BROWSER_CONCURRENCY) and the largest RSS of
any browser process (RUSAGE_CHILDREN, measured per case in a fresh child process).
"""

import argparse
import json
import subprocess
import sys

CASE = r"""
import json, resource, subprocess, sys, time, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.path.insert(0, ".")
PAGE = b"<html><body><div id=o>shell</div><script>setTimeout(function(){document.getElementById('o')" \
       b".textContent='rendered '+location.pathname},20)</script></body></html>"
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE))); self.end_headers(); self.wfile.write(PAGE)
    def log_message(self, *a): pass
site = ThreadingHTTPServer(("127.0.0.1", 0), H); threading.Thread(target=site.serve_forever, daemon=True).start()
urls = [f"http://127.0.0.1:{site.server_port}/p{i}" for i in range(int(sys.argv[2]))]
from shared.scrape import render
case = sys.argv[1]
if case == "service":
    from devtools import renderer
    service = renderer.serve(); browser = f"http://127.0.0.1:{service.server_port}"
started = time.monotonic(); ok = 0
for url in urls:
    if case == "floor":
        out = subprocess.run([render.browser_path(), *render.FLAGS, "--user-data-dir=/tmp/bench-render-floor",
                              f"--virtual-time-budget={render.VIRTUAL_TIME_MS}", "--dump-dom", url],
                             capture_output=True, timeout=60).stdout.decode()
    elif case == "local":
        out = render.render(url, 60, browser_url="")
    else:
        out = render.render(url, 60, browser_url=browser)
    ok += ("rendered /p" in out)
seconds = time.monotonic() - started
print(json.dumps({"seconds": seconds, "ok": ok, "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=10)
    args = parser.parse_args()
    rows = {}
    for case in ("floor", "local", "service"):
        done = subprocess.run([sys.executable, "-c", CASE, case, str(args.pages)], capture_output=True, text=True,
                              timeout=600)
        if done.returncode:
            raise SystemExit(f"{case} failed: {done.stderr[-500:]}")
        rows[case] = json.loads(done.stdout.strip().splitlines()[-1])
    floor = rows["floor"]["seconds"] / args.pages
    print("| renderer | pages | rendered | per page | pages per minute | vs floor | peak RSS, largest browser process |")
    print("|---|---|---|---|---|---|---|")
    names = {"floor": "bare `chromium --dump-dom` (floor)", "local": "local Chromium (render.py)",
             "service": "BROWSER_URL (devtools/renderer.py)"}
    for case, row in rows.items():
        per = row["seconds"] / args.pages
        print(f"| {names[case]} | {args.pages} | {row['ok']} | {per:.2f} s | {60 / per:.0f} | {per / floor:.2f}x |"
              f" {row['peak_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
