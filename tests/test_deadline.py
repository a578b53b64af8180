"""The one deadline mechanism (shared/core/deadline.py): a watch shuts its exchange's sockets when
its deadline passes, never a socket another exchange holds now, and runs its callback first.
Real sockets (socket pairs); no timing assertion beyond generous upper bounds."""

import socket
import threading
import time

from shared.core import deadline

GENEROUS = 10.0


def blocked_read(sock) -> threading.Event:
    """A thread blocked reading `sock`; the event is set when the read ends."""
    ended = threading.Event()

    def read():
        try:
            sock.recv(1)
        except OSError:
            pass
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    return ended


def test_a_blocked_read_ends_when_the_deadline_passes():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with deadline.watching(time.monotonic() + 0.2) as watch:
            deadline.register(ours)
            ended = blocked_read(ours)
            assert ended.wait(GENEROUS)
            assert watch.expired


def test_a_socket_another_exchange_took_over_is_left_alone():
    """A pooled connection passes from one exchange to the next: the first one's deadline no
    longer reaches it."""
    ours, theirs = socket.socketpair()
    connection = object()  # what owns the socket: a pooled HTTP connection, say
    with ours, theirs:
        first = deadline.Watch(time.monotonic() + 60)
        first.add(ours, connection)
        second = deadline.Watch(time.monotonic() + 60)
        second.add(ours, connection)  # the next exchange's now
        ended = blocked_read(ours)
        first.expire()
        assert not ended.wait(0.5)  # still reading
        second.expire()
        assert ended.wait(GENEROUS)
        first.close()
        second.close()


def test_a_closed_watch_shuts_nothing():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with deadline.watching(time.monotonic() + 0.1):
            deadline.register(ours)
        ended = blocked_read(ours)
        assert not ended.wait(0.5)  # the exchange was over before its deadline
        theirs.sendall(b"x")
        assert ended.wait(GENEROUS)


def test_the_callback_runs_before_the_sockets_are_shut():
    ours, theirs = socket.socketpair()
    seen = []

    def cancel():
        seen.append(ours.fileno() != -1 and not ended.is_set())  # still open, still reading

    with ours, theirs:
        ended = threading.Event()
        with deadline.watching(time.monotonic() + 0.2, on_expire=cancel):
            deadline.register(ours)
            ended = blocked_read(ours)
            assert ended.wait(GENEROUS)
    assert seen == [True]


def test_without_a_watch_registering_does_nothing():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert deadline.current() is None
        deadline.register(ours)  # no error, no effect
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"
