"""What a scrape job sends: its `method`, `headers`, `cookies` and `data`, checked when the job is
built and turned into one request here, for the run and `history test` alike.

    headers = {Authorization = "Bearer ${API_TOKEN}", Accept = "application/json"}
    cookies = {session = "${SESSION}"}
    method = "POST"
    data = {q = "budget", year = "2026"}     # a form (application/x-www-form-urlencoded), or a string

A value brought in by `${VAR}` is a secret: redacted everywhere (the jobs file registers it), never
stored, logged or mailed. Conditional requests (ETag, Last-Modified) are sent with GET only.
"""

import re
from urllib.parse import urlencode

METHODS = ("GET", "POST")
MAX_HEADERS = 50
MAX_VALUE_CHARS = 8192  # of one header or cookie value
MAX_DATA_CHARS = 1_000_000
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header or cookie name (RFC 9110)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")  # what would end a header line, or smuggle another


def check(job) -> None:
    """ValueError naming the key for anything that cannot be sent as written."""
    if job.method not in METHODS:
        raise ValueError(f"key 'method' must be one of {', '.join(map(repr, METHODS))}, not {str(job.method)[:20]!r}")
    for key in ("headers", "cookies"):
        value = getattr(job, key)
        if value is None:
            continue
        if not isinstance(value, dict) or len(value) > MAX_HEADERS:
            raise ValueError(f"key {key!r} must be a table of names and text values, at most {MAX_HEADERS}")
        for name, text in value.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"key {key!r}: {name[:40]!r} is not a valid {key[:-1]} name")
            if not isinstance(text, str) or len(text) > MAX_VALUE_CHARS or _UNSAFE.search(text) \
                    or key == "cookies" and (";" in text or "," in text):
                raise ValueError(f"key {key!r}: the value of {name!r} must be text of at most {MAX_VALUE_CHARS:,}"
                                 " characters without control characters" + (" or ; ," if key == "cookies" else ""))
    if job.data is not None:
        if job.method != "POST":
            raise ValueError("key 'data' is sent with method = \"POST\" only")
        form = job.data if isinstance(job.data, dict) else None
        if not isinstance(job.data, (dict, str)) or form is not None and not all(
                isinstance(k, str) and isinstance(v, str) for k, v in form.items()):
            raise ValueError("key 'data' must be a table of text values (a form) or a string")
        if len(job.data if isinstance(job.data, str) else urlencode(job.data)) > MAX_DATA_CHARS:
            raise ValueError(f"key 'data' must be at most {MAX_DATA_CHARS:,} characters")


def prepared(job) -> tuple[str, dict, bytes | None]:
    """(method, headers, body) of the job's request, before any conditional headers."""
    headers = dict(job.headers or {})
    if job.cookies:
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in job.cookies.items())
    body = None
    if isinstance(job.data, dict):
        body = urlencode(job.data).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif isinstance(job.data, str):
        body = job.data.encode("utf-8")
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    return job.method, headers, body
