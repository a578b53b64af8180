"""A `[[scrape]]` job: one watched page, its noise filters, its schedule and its alerts."""

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from shared.core import keys
from shared.scrape import content, filters, request
from shared.scrape.store import MAX_KEEP_DAYS

DEFAULT_EVERY = "10m"
NOTIFY_ON = ("any", "added", "removed")


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    url: str
    timeout: float = 30.0  # seconds for the whole fetch, body included
    conditional: bool = True  # send If-None-Match/If-Modified-Since; a 304 is an unchanged check
    # Noise filters (shared/scrape/filters.py): what of the page counts as its content.
    select: tuple[str, ...] = ()  # CSS selectors: keep only what they match
    drop: tuple[str, ...] = ()  # CSS selectors: remove what they match
    ignore: tuple[str, ...] = ()  # regular expressions: remove matching text
    text: bool | None = None  # HTML -> text; default: on when a filter above is set
    whitespace: str = "ignore"  # "ignore": spacing and blank lines are not changes; "keep"
    keep_days: int | None = None  # drop versions and check times older than this after each run
    # Keys every kind has (shared/core/keys.py): schedule, notifications, alerts.
    every: str | None = None  # "10m" (default), "1h", "1d"
    at: str | None = None
    cron: str | None = None  # AWS only
    notify: tuple[str, ...] | None = None  # Apprise URLs; None means $NOTIFY_URLS, [] none
    alert_after: int = 3  # consecutive failed checks before one alert
    heartbeat: str | None = None  # a ping URL for this job alone (shared/notify/heartbeat.py)
    # What notifies (a change is stored and shown either way): "any", "added" (the diff adds a
    # line) or "removed"; and notify_if, a regular expression an added line must match.
    notify_on: str = "any"
    notify_if: str | None = None
    # What is sent (shared/scrape/request.py): a table of headers, of cookies, POST and its data.
    headers: dict | None = None
    cookies: dict | None = None
    method: str = "GET"
    data: dict | str | None = None
    json: str | None = None  # a JMESPath expression: only what it selects of a JSON answer is content
    render: str | None = None  # "browser": the DOM after the page's scripts ran (shared/scrape/render.py)

    def __post_init__(self):
        keys.check_common(self, DEFAULT_EVERY)
        keys.check_type(self, "url", str)
        try:
            urlsplit(self.url).password  # noqa: B018 - parses the whole netloc
        except ValueError as exc:
            # Never echo the URL: it may hold a password that could not be found to redact.
            raise ValueError(f"key 'url' is not a valid URL ({exc})") from None
        keys.check_type(self, "timeout", (int, float))
        keys.check_type(self, "conditional", bool)
        if not 0 < self.timeout <= 300:  # a run must fit Lambda's and Heroku Scheduler's limits
            raise ValueError(f"timeout {self.timeout!r} must be between 0 and 300 seconds")
        for key in ("select", "drop", "ignore"):
            keys.check_strings(self, key)
        for selector in self.select + self.drop:
            filters.check_selector(selector)
        for pattern in self.ignore:
            filters.check_pattern(pattern)  # ValueError naming key 'ignore'
        if self.text is not None:
            keys.check_type(self, "text", bool)
        if self.whitespace not in filters.WHITESPACE_MODES:
            raise ValueError(f"key 'whitespace' must be one of {', '.join(filters.WHITESPACE_MODES)}, not {self.whitespace!r}")
        request.check(self)
        if self.render not in (None, "browser"):
            raise ValueError(f"key 'render' must be \"browser\" (or absent), not {str(self.render)[:20]!r}")
        if self.render and self.method != "GET":
            raise ValueError("key 'render': a browser loads the page with GET; method and data do not apply")
        if self.json is not None:
            content.check_expression(self.json)
        if self.notify_on not in NOTIFY_ON:
            raise ValueError(f"key 'notify_on' must be one of {', '.join(map(repr, NOTIFY_ON))}, not {self.notify_on!r}")
        if self.notify_if is not None:
            filters.check_trigger(self.notify_if)
        if self.keep_days is not None:
            keys.check_type(self, "keep_days", int)
            if not 1 <= self.keep_days <= MAX_KEEP_DAYS:
                raise ValueError(f"key 'keep_days' must be from 1 to {MAX_KEEP_DAYS} days, not {self.keep_days}")
        if not re.match(r"^https?://[^/\s]+", self.url):  # never echoed: it may hold a password
            scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]{0,20}):", self.url)
            raise ValueError("key 'url' must be an http:// or https:// address"
                             + (f", not {scheme.group(1)}://" if scheme else ""))
        if "\x00" in self.url:
            raise ValueError("url holds a NUL character")

    def secrets(self) -> tuple[str, ...]:
        """A password written in the URL (user:password@) is as secret as a ${VAR}."""
        password = urlsplit(self.url).password
        return ((password, unquote(password)) if password else ()) + ((self.heartbeat,) if self.heartbeat else ())

    @property
    def where(self) -> str:
        """What the job watches, for messages (redacted by the caller)."""
        return self.url
