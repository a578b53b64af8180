"""Who is asking, and whether they may: API keys (v2, in CARTO's order), Bearer tokens (CARTO 3)
and per-user rate limits."""

import base64
import math
import time

from devtools.carto_emulator.answers import HttpAnswer
from devtools.carto_emulator.postgres import PUBLIC_ROLE

RATE_LIMIT_MESSAGE = "You are over platform's limits. Please contact us to know more details"


def check_user(emulator, user: str | None) -> None:
    if user not in emulator.users:
        raise HttpAnswer(404, {"error": [f"Sorry, we can't find CARTO user '{user}'. Please check that"
                                         " you have entered the correct domain."]})


def authenticate(emulator, user: str, headers, params: dict, master: bool = False) -> str | None:
    """v2: HTTP Basic (user, key), else `api_key` in the query string or body. None for the
    master key, else the read-only role; raise the error answer."""
    basic = basic_auth(headers.get("Authorization"))
    if basic:
        basic_user, key = basic
        if basic_user != user:
            raise HttpAnswer(403, {"error": ["permission denied"]})
    else:
        key = params.get("api_key")
    if key and key == emulator.users.get(user):
        return None
    if key and emulator.regular_keys.get(key) != user:
        raise HttpAnswer(401, {"error": ["Unauthorized"]})
    if master:  # the Batch API wants the master key
        raise HttpAnswer(403, {"error": ["permission denied"]})
    return PUBLIC_ROLE


def bearer_user(emulator, headers) -> str:
    """CARTO 3: the user whose token is in `Authorization: Bearer`."""
    auth = headers.get("Authorization") or ""
    token = auth[7:] if auth.startswith("Bearer ") else None
    user = emulator.v3_tokens.get(token) if token else None
    if user is None or user not in emulator.users:
        raise HttpAnswer(401, {"error": "Unauthorized"})
    return user


def basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, key = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, key


def rate_limit_headers(emulator, user: str) -> dict:
    """Count this request; raise the 429 answer when the user is over the limit."""
    with emulator.lock:
        if emulator.rate_limit is None:
            return {}
        limit, window = emulator.rate_limit
        now = time.monotonic()
        start, used = emulator.windows.get(user, (now, 0))
        if now - start >= window:
            start, used = now, 0
        reset = max(1, math.ceil(start + window - now))
        if used >= limit:
            headers = {"Carto-Rate-Limit-Limit": limit, "Carto-Rate-Limit-Remaining": 0,
                       "Carto-Rate-Limit-Reset": reset, "Retry-After": reset}
            raise HttpAnswer(429, {"error": [RATE_LIMIT_MESSAGE], "context": "limit", "detail": "rate-limit"},
                             headers)
        emulator.windows[user] = (start, used + 1)
        return {"Carto-Rate-Limit-Limit": limit, "Carto-Rate-Limit-Remaining": limit - used - 1,
                "Carto-Rate-Limit-Reset": reset}
