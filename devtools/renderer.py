"""A small rendering service over a local Chromium, with browserless's `/content` API, so the
BROWSER_URL path is tested against a real server (and can serve a few machines on a LAN):

    python -m devtools.renderer [--port 3000]        # then BROWSER_URL=http://127.0.0.1:3000

`POST /content` with `{"url": "..."}` answers the page's DOM after its scripts ran (text/html), a
4xx/5xx with one line otherwise. One browser at a time (BROWSER_CONCURRENCY), each killed at 60 s.
Not deployed.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.scrape import render

TIMEOUT = 60.0
MAX_REQUEST = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        if self.path.split("?")[0] != "/content":
            return self._answer(404, b"POST /content only")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            url = json.loads(self.rfile.read(min(length, MAX_REQUEST)))["url"]
            if not isinstance(url, str) or not url.startswith(("http://", "https://", "file://")):
                raise ValueError("url must be an http(s) address")
        except (ValueError, KeyError, TypeError) as exc:
            return self._answer(400, f"bad request: {exc}".encode())
        try:
            html = render.render(url, TIMEOUT, browser_url="")
        except render.RenderError as exc:
            return self._answer(502, str(exc).encode())
        self._answer(200, html.encode("utf-8"), "text/html; charset=utf-8")

    def _answer(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(port: int = 0) -> ThreadingHTTPServer:
    """Start the service on loopback in a thread; its URL is http://127.0.0.1:<server_port>."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.renderer")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    server = serve(args.port)
    print(f"rendering on http://127.0.0.1:{server.server_port} (BROWSER_URL); Ctrl-C stops it", file=sys.stderr)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
