"""HTTP fetching with hard limits: connect and total time, and a maximum body size.

`fetch()` either returns a `Page` or raises `FetchError` with a short reason naming what went
wrong (DNS, refused, timeout, TLS, HTTP status, size cap). A failed fetch never yields content.

Pages are fetched with urllib3, the transport under requests, used directly: a run checks
hundreds of pages on two cores, and requests' per-request machinery (sessions, cookies,
hooks) costs 2.5 times the CPU of urllib3's for the same exchange (0.95 ms against 0.38 ms
per page here), which decides how many pages a run can check in parallel.
"""

import re
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

from shared.core import db, http, log, numbers
from shared.core.deadline import watching
from shared.core.names import USER_AGENT
from shared.scrape import blocks, memory

CONNECT_TIMEOUT = 10.0  # seconds to open the connection
TOTAL_TIMEOUT = 30.0  # seconds for the whole exchange, body included
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 10


class FetchError(Exception):
    """A check that produced no content; the message is the reason shown to users."""


@dataclass(frozen=True)
class Page:
    url: str  # final URL after redirects
    status: int  # 200..299, or 304 for an unchanged page (no text)
    text: str
    etag: str | None = None
    last_modified: str | None = None
    redirected: bool = False
    content_type: str = ""
    pdf: bytes | None = None  # a PDF answer's bytes (its text is extracted in the filter sandbox)


def is_pdf(headers) -> bool:
    return str(headers.get("Content-Type", "")).split(";", 1)[0].strip().lower() == "application/pdf"


def new_pool(hosts: int = 10, per_host: int = 2) -> urllib3.PoolManager:
    """Connections for a run: one pool per host, each keeping up to `per_host` alive for reuse."""
    # Each connection's socket registers with the fetch's deadline watch (shared.core.http).
    return http.pool_manager(
        num_pools=max(10, min(hosts, 1000)), maxsize=per_host,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        # Follow redirects, retry nothing else: a failed check is reported, and the next run retries.
        # read=1: a kept-alive connection the server closed just as it was reused ("Connection
        # aborted" before any answer) is tried once more on a fresh one (GET only: urllib3 retries
        # only idempotent methods). Every try stays within the fetch's one deadline.
        retries=urllib3.Retry(total=None, connect=0, read=1, status=0, other=0, redirect=MAX_REDIRECTS),
    )


def fetch(
    pool: urllib3.PoolManager,
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    total_timeout: float = TOTAL_TIMEOUT,
    max_bytes: int = MAX_BODY_BYTES,
    headers: dict | None = None,
    hold: memory.Hold | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Page:
    """GET `url` within `total_timeout`; `hold` is the check's share of the run's memory budget,
    grown before a body passes memory.FREE_BYTES (shared/scrape/memory.py)."""
    ends = time.monotonic() + total_timeout
    # urllib3's timeouts bound each socket operation, not their sum: a server trickling its TLS
    # handshake, its headers (or a redirect's endless body, which urllib3 drains) one byte at a
    # time would keep a fetch forever. The watch bounds the sum.
    with watching(ends) as watch:
        return _fetch(pool, url, connect_timeout, total_timeout, max_bytes, headers, hold, ends, watch,
                      method, body)


def _fetch(pool, url, connect_timeout, total_timeout, max_bytes, headers, hold, deadline, watch,
           method="GET", body=None) -> Page:
    try:
        # The read timeout bounds each socket read; the watch bounds the sum.
        response = pool.request(method, url, body=body,
                                headers={**pool.headers, **_credentials(url), **(headers or {})},
                                preload_content=False,
                                timeout=urllib3.Timeout(connect=connect_timeout, read=total_timeout))
    except (MaxRetryError, HTTPError, ValueError) as exc:
        raise _failure(exc, url, connect_timeout, total_timeout, watch.expired) from None
    clean = False  # whether the answer was read to its end, so its connection may serve another
    try:
        if not (200 <= response.status < 300 or response.status == 304):
            # 4xx/5xx, and what never carries the page: a redirect without Location, 1xx, 300. A
            # bot-protection challenge says so (its page is small: the head of it is enough).
            head = response.read1(blocks.HEAD_BYTES) if response.status in (403, 429, 503) else b""
            sign = blocks.block(response.status, response.headers, head)
            if sign:
                raise FetchError(f"blocked by bot protection ({sign})")
            raise FetchError(f"HTTP {response.status} {response.reason or ''}".strip())
        declared = response.headers.get("Content-Length", "")
        if numbers.is_whole(declared) and int(declared) > max_bytes:
            raise FetchError(f"body of {int(declared)} bytes is over the {max_bytes} byte cap")
        raw = bytearray()
        # read1 returns what has arrived instead of waiting for a full chunk, so the deadline
        # is checked even while a server drips its body byte by byte.
        for chunk in iter(lambda: response.read1(64 * 1024), b""):
            if len(raw) + len(chunk) > max_bytes:
                raise FetchError(f"body is over the {max_bytes} byte cap")
            if time.monotonic() > deadline:
                raise FetchError(f"timed out: no complete answer within {total_timeout:g} s")
            if hold is not None and len(raw) + len(chunk) > memory.FREE_BYTES and \
                    not hold.grow(max_bytes * (1 + memory.MAX_CHAR_BYTES), deadline):
                raise FetchError(f"timed out waiting for memory: other large pages held the run's budget"
                                 f" for {total_timeout:g} s (raise SCRAPE_MEMORY_MB)")
            raw += chunk
        if watch.expired:  # a body that ends with its connection may have been cut by the watch
            raise FetchError(f"timed out: no complete answer within {total_timeout:g} s")
        sign = blocks.block(response.status, response.headers, raw)
        if sign:  # a challenge served with 200: never stored as the page
            raise FetchError(f"blocked by bot protection ({sign})")
        clean = True
        return Page(
            url=response.geturl() or url,
            status=response.status,
            text=decode(raw, response.headers.get("Content-Type", "")) if not is_pdf(response.headers) else "",
            pdf=bytes(raw) if is_pdf(response.headers) else None,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            redirected=bool(response.retries and response.retries.history),
            content_type=str(response.headers.get("Content-Type", ""))[:200],
        )
    except HTTPError as exc:  # raised while reading the body
        raise _failure(exc, url, connect_timeout, total_timeout, watch.expired) from None
    finally:
        if not clean and response.connection is not None:
            response.connection.close()  # pooled as closed: the next request reconnects
        response.release_conn()


def _credentials(url: str) -> dict:
    """Basic authorization from the URL's user-info, as requests (so urlwatch) and browsers send
    it: urllib3 alone drops it. urllib3 removes the header on a redirect to another host. Its
    base64 form is as secret as the password: a page echoing its request must not store it."""
    try:
        parts = urlsplit(url)
    except ValueError:  # pool.request reports it
        return {}
    if parts.username is None and parts.password is None:
        return {}
    header = urllib3.util.make_headers(basic_auth=f"{unquote(parts.username or '')}:{unquote(parts.password or '')}")
    if parts.password:
        log.add_secret(header["authorization"].split(" ", 1)[1])
    return header


def _failure(exc: Exception, url: str, connect_timeout: float, total_timeout: float,
             expired: bool = False) -> FetchError:
    """The user-facing reason for a failed exchange (`expired`: the watch cut it short)."""
    if expired:
        return FetchError(f"timed out: no complete answer within {total_timeout:g} s")
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
        if isinstance(exc, MaxRetryError):  # too many redirects
            return FetchError(f"more than {MAX_REDIRECTS} redirects")
    if isinstance(exc, NameResolutionError):
        return FetchError(f"DNS lookup failed for {urlsplit(url).hostname}")
    if isinstance(exc, SSLError):
        return FetchError(f"TLS error: {_root_cause(exc)}")
    if isinstance(exc, NewConnectionError):  # (a subclass of ConnectTimeoutError: test it first)
        cause = _root_cause(exc)
        return FetchError("connection refused" if "refused" in cause.lower() else f"connection failed: {cause}")
    if isinstance(exc, ConnectTimeoutError):
        return FetchError(f"timed out: no connection within {connect_timeout:g} s")
    if isinstance(exc, (ReadTimeoutError, TimeoutError)):
        return FetchError(f"timed out: no answer within {total_timeout:g} s")
    if isinstance(exc, (LocationParseError, ValueError)):
        return FetchError(f"invalid URL: {exc}")
    if "redirect" in str(exc).lower():
        return FetchError(f"more than {MAX_REDIRECTS} redirects")
    return FetchError(f"connection failed: {_root_cause(exc)}")


_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.I)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([^"'\s/>;]+)""", re.I)
META_SCAN_BYTES = 1024  # how far browsers look for a <meta> charset (WHATWG's prescan)


def decode(raw: bytes | bytearray, content_type: str) -> str:
    """Text of a body, decoded the way browsers do (the WHATWG Encoding Standard, through
    webencodings): a byte order mark wins; then the Content-Type charset; then a <meta> charset
    in the first 1024 bytes; else UTF-8 when the bytes read as UTF-8 (a few stray invalid bytes
    become U+FFFD), else windows-1252. Labels the standard does not define (UTF-7 among them)
    are ignored, as browsers ignore them, and bytes an encoding cannot map become U+FFFD: a
    body always decodes."""
    import webencodings  # lazy: only runs that fetch decode

    declared = _HEADER_CHARSET.search(content_type or "")
    encoding = webencodings.lookup(declared.group(1)) if declared else None
    if encoding is None:
        meta = _META_CHARSET.search(raw[:META_SCAN_BYTES])
        encoding = webencodings.lookup(meta.group(1).decode("ascii", "replace")) if meta else None
        if encoding is not None and encoding.name in ("utf-16le", "utf-16be"):
            encoding = webencodings.UTF8  # a <meta> read as ASCII cannot mean UTF-16 (WHATWG)
        elif encoding is not None and encoding.name == "x-user-defined":
            encoding = webencodings.lookup("windows-1252")
    if encoding is None:
        encoding = webencodings.UTF8 if _mostly_utf8(raw) else webencodings.lookup("windows-1252")
    text, used = webencodings.decode(raw, encoding, errors="replace")  # a BOM overrides `encoding`
    if used.name == "replacement":  # labels of encodings unsafe on the web: one U+FFFD, as browsers do
        return "\ufffd" if raw else ""
    return db.storable(text)


def _mostly_utf8(raw: bytes | bytearray) -> bool:
    """True when undeclared bytes are UTF-8: they decode cleanly, or their valid multi-byte
    sequences outnumber the invalid bytes (a UTF-8 page with a stray byte stays UTF-8, while a
    windows-1252 page, whose accented letters are lone high bytes, does not)."""
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        pass
    text = raw.decode("utf-8", errors="replace")
    invalid = text.count("\ufffd") - raw.count(b"\xef\xbf\xbd")  # U+FFFD written in the page is valid
    valid_multibyte = sum(1 for c in text if c > "\x7f") - text.count("\ufffd") + raw.count(b"\xef\xbf\xbd")
    return valid_multibyte >= invalid


def _root_cause(exc: BaseException) -> str:
    """The innermost exception's message: the useful part of urllib3's nested errors."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc)
    text = text.split(": ", 1)[-1] if text.startswith("<") else text
    # OpenSSL's decorations say nothing to a user: "[SSL: CODE] ... (_ssl.c:1006)".
    return re.sub(r"\[SSL: [A-Z_]+\] | \(_ssl\.c:\d+\)", "", text)
