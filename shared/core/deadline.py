"""One deadline mechanism for every exchange: a page fetch, a CARTO call, a PostgreSQL statement.

Socket timeouts bound each read, not their sum: a server that sends a byte within every read
timeout (TLS handshake, headers, body, a PostgreSQL answer) keeps a read going forever. So an
exchange runs inside a Watch with its deadline: the sockets it uses are registered (a duplicate
of their file descriptor, so the watch never touches a descriptor that was closed and reused),
and one watchdog thread for the whole process shuts them down when the deadline passes; a
blocked read then ends at once, with an error the caller reports as "out of time".

    with deadline.watching(ends) as watch:   # this thread's exchanges register with `watch`
        ...                                  # watch.expired: whether the deadline cut them

Registration is done by the transports: shared.core.http (urllib3, requests) and
shared.core.db (pg8000) register the sockets they open or reuse on this thread's watch.
A socket may serve several exchanges in turn (a pooled connection): each registration names its
`owner` (the connection), and a watch shuts a socket only while that connection is still its
own, so a neighbour's exchange on a reused connection is never cut by another's deadline.
"""

import heapq
import itertools
import socket
import threading
import time
from contextlib import contextmanager

_current = threading.local()  # the watch of the exchange running on this thread
_owners_lock = threading.Lock()  # ownership changes and the shutdowns that test them


class Watch:
    """The sockets of one exchange, shut down together when its deadline passes. `on_expire`
    (optional) runs first, on a thread of its own (a PostgreSQL cancel, say)."""

    def __init__(self, deadline: float, on_expire=None):
        self.deadline = deadline
        self.on_expire = on_expire
        self.expired = False
        self.closed = False
        self._socks: dict[int, tuple[socket.socket, object]] = {}  # fd -> (duplicate, owner)

    def add(self, sock, owner=None) -> None:
        """Watch `sock` (any socket object, TLS or not) for `owner` (a connection, or None for a
        socket only this exchange uses)."""
        try:
            fd = sock.fileno()
            dup = socket.fromfd(fd, sock.family, sock.type)
        except (OSError, ValueError, AttributeError):
            return
        with _owners_lock:
            if self.closed:
                old = dup
            else:
                if owner is not None:
                    _OWNED[id(owner)] = self
                old = self._socks.pop(fd, (None, None))[0]
                self._socks[fd] = (dup, owner)
                if self.expired:
                    _shut(dup)
        if old is not None:
            old.close()

    def expire(self) -> None:
        with _owners_lock:
            if self.closed:
                return
            self.expired = True
            if self.on_expire is None:
                self._shut_owned()
                return
        threading.Thread(target=self._expire_after_callback, name="deadline-expire", daemon=True).start()

    def _expire_after_callback(self) -> None:
        try:
            self.on_expire()
        except Exception:  # noqa: BLE001 - best effort: the sockets are shut all the same
            pass
        with _owners_lock:
            if not self.closed:
                self._shut_owned()

    def _shut_owned(self) -> None:  # with _owners_lock held
        for dup, owner in self._socks.values():
            if owner is None or _OWNED.get(id(owner)) is self:
                _shut(dup)

    def close(self) -> None:
        with _owners_lock:
            self.closed = True
            socks, self._socks = list(self._socks.values()), {}
            for _, owner in socks:
                if owner is not None and _OWNED.get(id(owner)) is self:
                    del _OWNED[id(owner)]
        for dup, _ in socks:
            dup.close()


_OWNED: dict[int, Watch] = {}  # id(connection) -> the watch whose exchange holds it now


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # closed already, or never connected
        pass


class _Watchdog:
    """One daemon thread for every watch of the process: expires each at its deadline."""

    def __init__(self):
        self._heap: list = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self, watch: Watch) -> None:
        with self._changed:
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                # Woken only when the nearest deadline moved closer: a run's fetches start one
                # after another with ever later deadlines, and waking for each costs them all.
                self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while True:
                while self._heap and self._heap[0][2].closed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._changed.wait()
                    continue
                left = self._heap[0][0] - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                heapq.heappop(self._heap)[2].expire()


_WATCHDOG = _Watchdog()


@contextmanager
def watching(deadline: float, on_expire=None):
    """A Watch for `deadline` (time.monotonic()), current on this thread while the block runs;
    closed after it (its sockets are then no longer ours to shut)."""
    watch = Watch(deadline, on_expire)
    _WATCHDOG.start(watch)
    outer = getattr(_current, "watch", None)
    _current.watch = watch
    try:
        yield watch
    finally:
        _current.watch = outer
        watch.close()


def current() -> Watch | None:
    """The watch of the exchange running on this thread, if any."""
    return getattr(_current, "watch", None)


def register(sock, owner=None) -> None:
    """Watch `sock` under this thread's current watch (nothing without one)."""
    watch = current()
    if watch is not None:
        watch.add(sock, owner)
