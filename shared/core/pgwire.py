"""The socket under a pg8000 connection, opened by us and handed to pg8000 through its public
`sock` argument, so that everything about it stays ours to bound without reaching into pg8000:

- TLS is negotiated here (PostgreSQL's SSLRequest, then libpq's sslmode rules), so a host name
  can be checked (verify-full), and pg8000 still sees an ssl.SSLSocket (SCRAM channel binding);
- the socket registers with this thread's deadline watch (shared.core.deadline): connecting,
  authenticating and every statement end at the deadline, however a server trickles;
- its timeout is ours to change after connecting (`settimeout`);
- what pg8000 reads goes through `makefile()`, which may cut messages to a size (`Limits`): a
  row bigger than `row_bytes` arrives with its values NULL, a notice or error bigger than
  `message_bytes` arrives cut to that size. pg8000 reads each message whole before decoding it,
  so without this a 200 MB value would cost 840 MB.
"""

import socket
import struct
import weakref
from dataclasses import dataclass
from functools import cache

from shared.core import deadline

SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's "may we speak TLS?"
HEADER = struct.Struct("!cI")  # a server message: its type, then its length (itself included)
DATA_ROW, NOTICE, ERROR = b"D", b"N", b"E"
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Limits:
    row_bytes: int  # a row bigger than this arrives with its values NULL
    message_bytes: int  # a notice or error bigger than this arrives cut to this size


class TLSNotOffered(ConnectionError):
    """The server answered the TLS request with "no", and the sslmode requires TLS."""


class _Wire:
    """What both socket classes add: the limits their reads keep and the file pg8000 reads."""

    limits: Limits | None = None
    file = None  # a weak reference: the file refers to the socket, and a cycle would outlive pg8000

    def makefile(self, mode="r", *args, **kwargs):
        raw = super().makefile(mode, *args, **kwargs)
        file = _BoundedReader(raw, self.limits) if self.limits and mode == "rwb" else raw
        self.file = weakref.ref(file)
        return file

    def close_file(self) -> None:
        """Close pg8000's buffered file: one whose unsent bytes cannot leave raises later, from the
        garbage collector, on stderr."""
        file = self.file() if self.file is not None else None
        if file is not None:
            try:
                file.close()
            except (OSError, ValueError):  # broken: that is why we are here
                pass


class PlainSocket(_Wire, socket.socket):
    pass


@cache
def _tls_socket_class() -> type:
    """ssl.SSLSocket with our makefile; made on first use: importing ssl costs a cold start 25 ms,
    and a local database on a Unix socket never needs it."""
    import ssl

    class TLSSocket(_Wire, ssl.SSLSocket):
        pass

    return TLSSocket


def open_socket(address, timeout: float, tls, required: bool,
                server_hostname: str | None, limits: Limits | None = None):
    """A connected socket to `address` (a Unix socket path, or (host, port)), watched by this
    thread's deadline watch, with TLS when `tls` (a context made for this connection) is given
    and the server accepts; a refusal raises TLSNotOffered when `required`. Socket operations
    wait up to `timeout` each."""
    sock = _connected(address, timeout)
    try:
        if tls is not None:
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
            if answer == b"S":
                tls.sslsocket_class = _tls_socket_class()
                sock = tls.wrap_socket(sock, server_hostname=server_hostname)
            elif answer == b"N":
                if required:
                    raise TLSNotOffered("the server does not offer TLS")
            else:
                raise ConnectionError("the server did not answer the TLS request as PostgreSQL does")
        sock.limits = limits
        return sock
    except BaseException:
        sock.close()
        raise


def _connected(address, timeout: float) -> PlainSocket:
    """A socket connected to a Unix socket path, or to the first of a host's addresses that
    answers (as socket.create_connection does, with our socket class)."""
    if isinstance(address, str):
        candidates = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, address)]
    else:
        candidates = [(family, kind, proto, where) for family, kind, proto, _, where
                      in socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)]
    problem: OSError | None = None
    for family, kind, proto, where in candidates:
        sock = PlainSocket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            deadline.register(sock)
            sock.connect(where)
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            return sock
        except OSError as exc:
            sock.close()
            problem = exc
    raise problem or OSError(f"no address for {address!r}")


class _BoundedReader:
    """pg8000's file over the socket, reading whole server messages and cutting those over the
    limits on the way (the rest of a cut message is read and dropped, never held). pg8000 reads,
    writes and flushes; writes go straight through."""

    def __init__(self, raw, limits: Limits):
        self.raw, self.limits = raw, limits
        self.pending = b""  # the start of the current message, as pg8000 will see it
        self.passing = 0  # bytes of the current message still to pass through as they are

    def read(self, size: int) -> bytes:
        if not self.pending and not self.passing:
            self._next_message()
        if self.pending:
            data, self.pending = self.pending[:size], self.pending[size:]
            return data
        if self.passing:
            data = self.raw.read(min(size, self.passing, CHUNK))
            self.passing -= len(data)
            return data
        return b""

    def _next_message(self) -> None:
        head = self._exactly(HEADER.size)
        if len(head) < HEADER.size:
            self.pending = head  # the end of the stream: pg8000 reports the broken connection
            return
        code, length = HEADER.unpack(head)
        size = length - 4
        if size < 0:  # a length that cannot be: what follows cannot be read as messages
            raise ConnectionError("the server sent a malformed message")
        if code == DATA_ROW and size > self.limits.row_bytes:
            count = self._exactly(2)  # the row's columns, each then sent as NULL
            self._skip(size - 2)
            columns = struct.unpack("!h", count)[0] if len(count) == 2 else 0
            body = count + b"\xff\xff\xff\xff" * columns
        elif code in (NOTICE, ERROR) and size > self.limits.message_bytes:
            body = self._exactly(self.limits.message_bytes) + b"\x00\x00"  # the cut field, and the message, ended
            self._skip(size - self.limits.message_bytes)
        else:
            self.pending, self.passing = head, size
            return
        self.pending = HEADER.pack(code, len(body) + 4) + body

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.raw.read(size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def _skip(self, size: int) -> None:
        while size > 0:
            chunk = self.raw.read(min(size, CHUNK))
            if not chunk:
                return
            size -= len(chunk)

    def write(self, data) -> int:
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.raw.close()
