"""HTTP connections whose sockets register with this thread's deadline watch (shared.core.deadline).

Both transports use it: scrape fetches through urllib3 (`pool_manager`), CARTO calls through
requests (`WatchedAdapter`, mounted on the session). Only public hooks are used:
- urllib3's connection classes, through a pool's `ConnectionCls` and a manager's
  `pool_classes_by_scheme`; their `connect()` registers a new socket and `request()` a reused
  one (the connection is then this exchange's, see deadline.Watch's owners);
- an ssl.SSLContext subclass whose `wrap_socket` registers the plain socket before the TLS
  handshake, so that a handshake trickled byte by byte is cut at the deadline too;
- http.client's `response_class`, whose `begin()` marks an answer that may leave bytes behind
  as closing its connection (headers malformed enough to hide `Connection: close`, a body after
  a 204 or 304): a pooled connection carrying those bytes would garble the next answer on it,
  a neighbouring target's.
"""

import http.client
import ssl
import threading
from functools import cache

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared.core import deadline


class _WatchedContext(ssl.SSLContext):
    certs_pending = False  # the system's CAs are loaded at the first handshake (20 ms a run saved without one)
    _lock = threading.Lock()

    def wrap_socket(self, sock, *args, **kwargs):
        if self.certs_pending:
            with self._lock:
                if self.certs_pending:
                    self.load_default_certs()
                    self.certs_pending = False
        deadline.register(sock)  # the handshake's reads are the exchange's too
        return super().wrap_socket(sock, *args, **kwargs)


def tls_context(default_certs: bool = True) -> ssl.SSLContext:
    """A client TLS context with urllib3's own settings (TLS 1.2 at least, no compression,
    strict chains, certificates and host names checked) whose handshakes are watched.
    `default_certs`: trust the system's CAs, loaded at the first handshake (requests brings its own
    bundle instead)."""
    context = _WatchedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_SSLv2 | ssl.OP_NO_SSLv3 | ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
    context.post_handshake_auth = True
    context.hostname_checks_common_name = False
    context.certs_pending = default_certs
    return context


class _CheckedResponse(http.client.HTTPResponse):
    def begin(self):
        super().begin()
        if self.msg.defects or self.status in (204, 304) and (
                self.headers.get("Content-Length", "0").strip() not in ("", "0") or "Transfer-Encoding" in self.headers):
            self.will_close = True  # http.client then closes the connection instead of keeping it


class _Watched:
    """What both connection classes add: their socket registers with this thread's watch when
    it connects (after TLS: the handshake's plain socket registered in wrap_socket) and when a
    kept-alive connection from the pool carries a request (the connection is this exchange's now)."""

    response_class = _CheckedResponse

    def connect(self):
        super().connect()
        deadline.register(self.sock, self)

    def request(self, *args, **kwargs):
        if self.sock is not None:
            deadline.register(self.sock, self)
        return super().request(*args, **kwargs)


class _WatchedHTTP(_Watched, HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


POOL_CLASSES = {"http": _HTTPPool, "https": _HTTPSPool}


def pool_manager(**kwargs) -> urllib3.PoolManager:
    """A urllib3 PoolManager whose connections are watched (kwargs: PoolManager's)."""
    manager = urllib3.PoolManager(ssl_context=tls_context(), **kwargs)
    manager.pool_classes_by_scheme = POOL_CLASSES
    return manager


def requests_adapter():
    """A requests adapter whose connections are watched (mount it on a session for http:// and
    https://). requests hands urllib3 its CA bundle (`verify`); the context takes it from there."""
    return _adapter_class()()


@cache
def _adapter_class() -> type:
    from requests.adapters import HTTPAdapter  # here: a scrape run never needs requests

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, ssl_context=tls_context(default_certs=False), **kwargs)
            self.poolmanager.pool_classes_by_scheme = POOL_CLASSES

        def proxy_manager_for(self, proxy, **proxy_kwargs):
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if manager.pool_classes_by_scheme is urllib3.PoolManager.pool_classes_by_scheme:  # not SOCKS's
                manager.pool_classes_by_scheme = POOL_CLASSES
            return manager

    return WatchedAdapter
