"""A raw HTTP server on loopback for tests that must send what no well-behaved server would:
subclasses say how to `respond` to each request, byte by byte if they like."""

import socket
import threading
import time


class RawServer:
    """Accepts connections on 127.0.0.1, reads each request's head, and calls `respond(conn,
    target, request)` on a thread of its own; a client hanging up is not an error."""

    timeout = 5.0  # seconds a connection may stay quiet before the server gives up on it

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def respond(self, conn: socket.socket, target: str, request: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(self.timeout)
            request = b""
            try:
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                self.respond(conn, request.split(b" ", 2)[1].decode("latin-1"), request)
            except OSError:  # the client hung up: what a timed-out fetch does
                pass


# --- servers the fetch and refresh tests share -----------------------------------------

GIVE_UP = 20  # seconds a hostile server keeps at it; then it ends its answer well, so a build whose
# timeout does not hold fails (stores it) instead of hanging


class Site(RawServer):
    """A loopback server whose answers are functions of (connection, request target): they may
    write slowly, or forever (until GIVE_UP, or until the client hangs up)."""

    timeout = GIVE_UP

    def __init__(self):
        self.answers = {}
        self.requests: list[str] = []
        self.raw: dict[str, bytes] = {}  # request target -> the last request for it, as received
        super().__init__()

    def respond(self, conn, target, request):
        self.requests.append(target)
        self.raw[target] = request
        path = target.lstrip("/").split("?")[0].split("/")[0]  # /chain/3 is answered by "chain"
        self.answers.get(path, lambda c, t: c.sendall(ok(b"")))(conn, target)


def ok(body: bytes, headers: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body


def trickle(conn, data: bytes, every: float = 0.05):
    """Send `data` a byte at a time, until GIVE_UP."""
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > GIVE_UP:
            return
        conn.sendall(bytes([byte]))
        time.sleep(every)



class Silent:
    """A loopback server that accepts connections and never answers (nor closes them)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


class RawSite(RawServer):
    """Answers each path with raw bytes (status line, headers and body exactly as given)."""

    def __init__(self):
        self.answers: dict[str, bytes] = {}
        self.keep_open: set[str] = set()  # paths whose connection stays open after the answer
        super().__init__()

    def respond(self, conn, target, request):
        path = target.lstrip("/")
        conn.sendall(self.answers.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
        if path in self.keep_open:  # and answer whatever comes next on it with garbage
            while conn.recv(4096):
                conn.sendall(b"garbage, not HTTP\r\n\r\n")


def answer(body: bytes, status: bytes = b"200 OK", headers: list[bytes] = ()) -> bytes:
    head = [b"HTTP/1.1 " + status, *headers, b"Content-Length: %d" % len(body), b"Connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class SlowHandshake(Silent):
    """A loopback "HTTPS" server whose TLS handshake never ends: it announces a 16 KB handshake
    record and sends it a byte at a time, each well within any read timeout. With another
    `announce`, another protocol's message (PostgreSQL's)."""

    def __init__(self, announce: bytes = b"\x16\x03\x03\x40\x00"):  # a handshake record of 16384 bytes
        self.announce = announce
        super().__init__()

    def _accept(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            self.held.append(conn)
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn):
        try:
            conn.sendall(self.announce)
            trickle(conn, b"\x00" * 16384, every=0.2)
        except OSError:  # the client gave up: what it should do
            pass
