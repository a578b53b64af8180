"""A raw HTTP server on loopback for tests that must send what no well-behaved server would:
subclasses say how to `respond` to each request, byte by byte if they like."""

import socket
import threading


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
