"""The run's memory budget for page bodies: bounded by configuration, not by what servers send.

Each check holds a share of the budget from the moment its body grows past FREE_BYTES until the
writer has stored it. Past that point a fetch reserves, at once, what its body could grow to
(the byte cap, plus the decoded text at Python's widest 4 bytes per character), so it can
always finish what it started: fetches never hold part of what they need while waiting for the
rest, and cannot deadlock. Once the text is decoded the reservation shrinks to what the body
really occupies. A fetch that cannot get its share before its own timeout fails alone.

$SCRAPE_MEMORY_MB sets the budget (default DEFAULT_MB): with 48 parallel fetches of small pages
nothing waits; 150 pages of 4 MB take turns and fit the scrape Lambda's 512 MB
(bench/RESULTS.md, "Scrape memory").
"""

import os
import sys
import threading
import time

from shared.core import numbers
from shared.core.errors import ConfigError

DEFAULT_MB = 160
FREE_BYTES = 256 * 1024  # a body smaller than this needs no share: 48 of them are 12 MB
MAX_CHAR_BYTES = 4  # a Python str stores each character in 1, 2 or 4 bytes


class Budget:
    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.free = limit_bytes
        self.changed = threading.Condition()

    def take(self, wanted: int, deadline: float | None) -> int:
        """Wait until `wanted` bytes (at most the whole budget) are free and take them; returns
        what was taken, or 0 when `deadline` (time.monotonic()) came first."""
        wanted = min(wanted, self.limit)
        with self.changed:
            while self.free < wanted:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return 0
                self.changed.wait(left)
            self.free -= wanted
            return wanted

    def give(self, count: int) -> None:
        if count:
            with self.changed:
                self.free += count
                self.changed.notify_all()


class Hold:
    """What one check holds of the budget."""

    def __init__(self, budget: Budget | None):
        self.budget, self.bytes = budget, 0

    def grow(self, wanted: int, deadline: float | None) -> bool:
        """Hold `wanted` bytes in all (False if they could not be had before `deadline`)."""
        if self.budget is None or wanted <= self.bytes:
            return True
        taken = self.budget.take(wanted - self.bytes, deadline)
        self.bytes += taken
        return taken > 0

    def settle(self, kept: int) -> None:
        """Keep only `kept` bytes (what the body occupies now), giving the rest back."""
        if self.budget is not None and kept < self.bytes:
            self.budget.give(self.bytes - kept)
            self.bytes = kept

    def release(self) -> None:
        self.settle(0)


def size_of(text: str | None) -> int:
    """The memory a body holds (its characters at 1, 2 or 4 bytes each)."""
    return sys.getsizeof(text) if text else 0


def from_environment() -> Budget:
    value = os.environ.get("SCRAPE_MEMORY_MB")
    if value is None:
        return Budget(DEFAULT_MB * 1024 * 1024)
    try:
        return Budget(numbers.whole(value, "SCRAPE_MEMORY_MB", 16, 65536, " of megabytes") * 1024 * 1024)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
