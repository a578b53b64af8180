"""What a request gets instead of its success: an error answer, or none at all."""

import json
from datetime import date, datetime, timezone
from decimal import Decimal


class HttpAnswer(Exception):
    """An error answer: raised anywhere in a request's handling, written once. A `str` body
    goes out as text (what a gateway in front of CARTO answers), a dict as JSON."""

    def __init__(self, status: int, body: dict | str, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class NoAnswer(Exception):
    """Hold the connection without answering (until the emulator stops), as a gateway does
    that waits for a query past the client's read timeout."""


def encode(body: dict | str) -> tuple[bytes, str]:
    """The bytes of a body and their Content-Type."""
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body, default=json_value).encode(), "application/json; charset=utf-8"


def json_value(value):
    """PostgreSQL values JSON has no type for, as CARTO writes them."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return str(value)
