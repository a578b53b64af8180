"""A refresh's deadline down to its sockets: a trickling server cannot hold a read past it.

Requests' timeouts bound each socket read, not a whole answer, so DeadlineAdapter registers each
connection's socket with the run's Watchdog, which shuts them all down when the time budget ends.
"""

import socket
import threading
import time
import weakref

from requests.adapters import HTTPAdapter
from urllib3 import connection as u3_connection
from urllib3 import connectionpool as u3_pool
from urllib3 import poolmanager as u3_poolmanager


class Watchdog:
    """Ends the run's connections when its deadline passes. Requests' read timeout bounds each
    socket read, not their sum: a server that sends a byte within every read timeout (in its
    headers or its body) would keep a read going past any deadline. The sockets are registered
    as they connect; at the deadline a timer shuts them down, which ends a blocked read at once."""

    def __init__(self, deadline: float):
        self.fired = False
        self.sockets: weakref.WeakSet = weakref.WeakSet()
        self.lock = threading.Lock()
        self.timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.fire)
        self.timer.daemon = True
        self.timer.start()

    def register(self, sock) -> None:
        with self.lock:
            self.sockets.add(sock)
            fired = self.fired
        if fired:
            _shutdown(sock)

    def fire(self) -> None:
        with self.lock:
            self.fired = True
            sockets = list(self.sockets)
        for sock in sockets:
            _shutdown(sock)

    def stop(self) -> None:
        self.timer.cancel()


def _shutdown(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # closed already, or never connected
        pass


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections register their sockets with a Watchdog."""

    def __init__(self, watchdog: Watchdog):
        self.watchdog = watchdog
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.watchdog)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme is u3_poolmanager.pool_classes_by_scheme:  # not SOCKS: its own
            manager.pool_classes_by_scheme = _pool_classes(self.watchdog)
        return manager


def _pool_classes(watchdog: Watchdog) -> dict:
    def watched(base):
        class Watched(base):
            def _new_conn(self):
                sock = super()._new_conn()
                watchdog.register(sock)  # the plain socket: covers the time until TLS wraps it
                return sock

            def connect(self):
                super().connect()
                if self.sock is not None:
                    watchdog.register(self.sock)  # with TLS, a new socket object on the same connection
        return Watched

    return {"http": type("HTTPConnectionPool", (u3_pool.HTTPConnectionPool,),
                         {"ConnectionCls": watched(u3_connection.HTTPConnection)}),
            "https": type("HTTPSConnectionPool", (u3_pool.HTTPSConnectionPool,),
                          {"ConnectionCls": watched(u3_connection.HTTPSConnection)})}
