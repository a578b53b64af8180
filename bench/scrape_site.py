"""The scrape benchmark's loopback site: many small, stable pages on 50 "hosts", slow on purpose.

    python -m bench.scrape_site [--hosts 50] [--pages-per-host 100] [--latency 0.05] [--port 0]

Every address in 127.0.0.0/8 reaches this machine, so 127.0.0.2 ... 127.0.0.51 act as 50
separate sites and a client's per-host limits are exercised as on the real web. Each address
is bound explicitly (never 0.0.0.0), all on one port; the first line printed is that port.

    http://127.0.0.N:PORT/pages/I.html    page I (0 <= I < pages-per-host) of host N, ~2 kB
    http://127.0.0.1:PORT/stats           counters since the last reset, as JSON
    http://127.0.0.1:PORT/stats/reset     the same, then set them to zero

A page's body is a function of its URL alone, so two runs (or two tools) see the same
content; it carries an ETag and a Last-Modified, and a matching If-None-Match (or, without
one, an If-Modified-Since not older than Last-Modified) gets 304 with no body. Every page
answer waits `latency` seconds with asyncio.sleep, so thousands of waits overlap and the
server is not what a benchmark measures. HTTP/1.1 keep-alive; one request at a time per
connection.
"""

import argparse
import asyncio
import email.utils
import hashlib
import json
import random
import sys
from datetime import datetime, timezone

STATS_ADDRESS = "127.0.0.1"
LAST_MODIFIED = datetime(2025, 1, 1, tzinfo=timezone.utc)
WORDS = ("council agenda minutes budget meeting item motion vote park road school library "
         "permit zoning hearing notice public comment report draft plan water transit").split()
PAGE_BYTES = 2000


def host_addresses(hosts: int) -> list[str]:
    """127.0.0.2, 127.0.0.3, ...: `hosts` addresses, one "site" each (at most 254)."""
    if not 1 <= hosts <= 254:
        raise ValueError("between 1 and 254 hosts fit in 127.0.0.2 ... 127.0.0.255")
    return [f"127.0.0.{n}" for n in range(2, 2 + hosts)]


def page_body(host: str, index: int) -> bytes:
    """About 2 kB of HTML, the same for the same URL in every run (seeded by host and index)."""
    rng = random.Random(f"{host}/{index}")
    parts = [f"<!doctype html><html><head><title>{host} page {index}</title></head><body>",
             f"<h1>Page {index} of {host}</h1>"]
    size = sum(map(len, parts))
    while size < PAGE_BYTES - 40:
        paragraph = "<p>" + " ".join(rng.choice(WORDS) for _ in range(20)) + ".</p>\n"
        parts.append(paragraph)
        size += len(paragraph)
    parts.append("</body></html>\n")
    return "".join(parts).encode()


class Site:
    def __init__(self, pages_per_host: int, latency: float):
        self.pages_per_host = pages_per_host
        self.latency = latency
        self.pages: dict[tuple[str, int], tuple[bytes, str]] = {}  # built on first request
        self.in_flight: dict[str, int] = {}
        self.reset()

    def reset(self) -> dict:
        old = getattr(self, "stats", {})
        self.stats = {"requests": 0, "status_200": 0, "status_304": 0, "status_other": 0,
                      "body_bytes": 0, "connections": 0, "max_parallel_per_host": 0}
        return old

    def page(self, host: str, index: int) -> tuple[bytes, str]:
        key = (host, index)
        if key not in self.pages:
            body = page_body(host, index)
            self.pages[key] = body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        return self.pages[key]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one connection until the client closes it or asks to."""
        local = writer.get_extra_info("sockname")[0]
        if local != STATS_ADDRESS:
            self.stats["connections"] += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                method, path, version, headers = parse_head(head)
                if headers.get("content-length", "0").isdigit() and int(headers.get("content-length", "0")):
                    await reader.readexactly(int(headers["content-length"]))  # no use for a body
                keep_alive = (version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                              or headers.get("connection", "").lower() == "keep-alive")
                if local == STATS_ADDRESS:
                    status, extra, body = self.stats_answer(path)
                else:
                    status, extra, body = await self.page_answer(local, path, headers)
                writer.write(response(status, extra, b"" if method == "HEAD" else body, keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except ConnectionError:
            return
        finally:
            writer.close()

    def stats_answer(self, path: str):
        if path == "/stats/reset":
            stats = self.reset()
        elif path == "/stats":
            stats = dict(self.stats)
        else:
            return 404, {}, b"not found\n"
        return 200, {"Content-Type": "application/json"}, json.dumps(stats).encode()

    async def page_answer(self, host: str, path: str, headers: dict):
        """Wait the latency (without blocking other requests), then the page, a 304 or a 404."""
        self.stats["requests"] += 1
        self.in_flight[host] = self.in_flight.get(host, 0) + 1
        self.stats["max_parallel_per_host"] = max(self.stats["max_parallel_per_host"], self.in_flight[host])
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight[host] -= 1
        index = page_index(path)
        if index is None or index >= self.pages_per_host:
            self.stats["status_other"] += 1
            return 404, {"Content-Type": "text/plain"}, b"not found\n"
        body, etag = self.page(host, index)
        validators = {"ETag": etag, "Last-Modified": email.utils.format_datetime(LAST_MODIFIED, usegmt=True)}
        if not_modified(headers, etag):
            self.stats["status_304"] += 1
            return 304, validators, b""
        self.stats["status_200"] += 1
        self.stats["body_bytes"] += len(body)
        return 200, {"Content-Type": "text/html; charset=utf-8", **validators}, body


def parse_head(head: bytes):
    lines = head.decode("latin-1").split("\r\n")
    method, path, version = (lines[0].split(" ") + ["", "", ""])[:3]
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, path.split("?", 1)[0], version, headers


def page_index(path: str) -> int | None:
    name = path.removeprefix("/pages/").removesuffix(".html")
    return int(name) if path.startswith("/pages/") and name.isdigit() else None


def not_modified(headers: dict, etag: str) -> bool:
    """RFC 9110: If-None-Match wins when present; else If-Modified-Since."""
    if "if-none-match" in headers:
        tags = [t.strip().removeprefix("W/") for t in headers["if-none-match"].split(",")]
        return etag in tags or "*" in tags
    since = headers.get("if-modified-since")
    if since:
        try:
            return email.utils.parsedate_to_datetime(since) >= LAST_MODIFIED
        except (TypeError, ValueError):
            return False
    return False


REASONS = {200: "OK", 304: "Not Modified", 404: "Not Found"}


def response(status: int, headers: dict, body: bytes, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", *(f"{k}: {v}" for k, v in headers.items()),
             f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    if status != 304:  # a 304 has no body, so no length either
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def serve(hosts: int, pages_per_host: int, latency: float, port: int = 0) -> None:
    """Bind every host address (and the stats address) on one port, print it, serve forever."""
    site = Site(pages_per_host, latency)
    servers, port = await bind_all([STATS_ADDRESS, *host_addresses(hosts)], site.handle, port)
    print(port, flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


async def bind_all(addresses: list[str], handler, port: int, attempts: int = 20):
    """Servers on one common port: the first address picks a free one, the others follow it;
    if another program holds that port on some address, start over with a new one."""
    for _ in range(attempts):
        servers = [await asyncio.start_server(handler, addresses[0], port, backlog=1024)]
        chosen = servers[0].sockets[0].getsockname()[1]
        try:
            for address in addresses[1:]:
                servers.append(await asyncio.start_server(handler, address, chosen, backlog=1024))
            return servers, chosen
        except OSError:
            for server in servers:
                server.close()
            if port:
                raise
    raise OSError("no port is free on every host address")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--pages-per-host", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each page answer")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.hosts, args.pages_per_host, args.latency, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
