"""HTTP fetching with hard limits: connect and total time, and a maximum body size.

`fetch()` either returns a `Page` or raises `FetchError` with a short reason naming what went
wrong (DNS, refused, timeout, TLS, HTTP status, size cap). A failed fetch never yields content.
"""

import re
import time
from urllib.parse import urlsplit
from dataclasses import dataclass

import requests
import urllib3

from shared import USER_AGENT

CONNECT_TIMEOUT = 10.0  # seconds to open the connection
TOTAL_TIMEOUT = 30.0  # seconds for the whole exchange, body included
MAX_BODY_BYTES = 5 * 1024 * 1024


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


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def fetch(
    session: requests.Session,
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    total_timeout: float = TOTAL_TIMEOUT,
    max_bytes: int = MAX_BODY_BYTES,
    headers: dict | None = None,
) -> Page:
    deadline = time.monotonic() + total_timeout
    try:
        # The read timeout bounds each socket read; the deadline below bounds the sum.
        with session.get(
            url, headers=headers, stream=True, timeout=(connect_timeout, total_timeout)
        ) as response:
            if response.status_code >= 400:
                raise FetchError(f"HTTP {response.status_code} {response.reason or ''}".strip())
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"body of {int(declared)} bytes is over the {max_bytes} byte cap")
            chunks, size = [], 0
            # read1 returns what has arrived instead of waiting for a full chunk, so the
            # deadline is checked even while a server drips its body byte by byte.
            for chunk in iter(lambda: response.raw.read1(64 * 1024, decode_content=True), b""):
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"body is over the {max_bytes} byte cap")
                if time.monotonic() > deadline:
                    raise FetchError(f"timed out: no complete answer within {total_timeout:g} s")
                chunks.append(chunk)
            raw = b"".join(chunks)
            encoding = response.encoding or response.apparent_encoding or "utf-8"
            return Page(
                url=response.url,
                status=response.status_code,
                text=raw.decode(encoding, errors="replace").replace("\x00", ""),
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                redirected=bool(response.history),
            )
    except FetchError:
        raise
    except requests.exceptions.SSLError as exc:
        raise FetchError(f"TLS error: {_root_cause(exc)}") from None
    except requests.exceptions.ConnectTimeout:
        raise FetchError(f"timed out: no connection within {connect_timeout:g} s") from None
    except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
        raise FetchError(f"timed out: no answer within {total_timeout:g} s") from None
    except requests.exceptions.ConnectionError as exc:
        cause = _root_cause(exc)
        if "Name or service not known" in cause or "NameResolution" in repr(exc) or "getaddrinfo" in cause:
            raise FetchError(f"DNS lookup failed for {urlsplit(url).hostname}") from None
        if "refused" in cause.lower():
            raise FetchError("connection refused") from None
        raise FetchError(f"connection failed: {cause}") from None
    except urllib3.exceptions.HTTPError as exc:  # raised by read1 while reading the body
        raise FetchError(f"connection failed while reading the body: {_root_cause(exc)}") from None
    except requests.exceptions.InvalidURL as exc:
        raise FetchError(f"invalid URL: {exc}") from None
    except requests.exceptions.RequestException as exc:
        raise FetchError(f"request failed: {_root_cause(exc)}") from None


def _root_cause(exc: BaseException) -> str:
    """The innermost exception's message: the useful part of requests' nested errors."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc)
    text = text.split(": ", 1)[-1] if text.startswith("<") else text
    # OpenSSL's decorations say nothing to a user: "[SSL: CODE] ... (_ssl.c:1006)".
    return re.sub(r"\[SSL: [A-Z_]+\] | \(_ssl\.c:\d+\)", "", text)
