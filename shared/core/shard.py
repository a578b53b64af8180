"""Splitting a job list across machines: shard I of N.

A job's shard depends only on its name (a hash, not Python's per-process hash()), so every
machine agrees on it without talking to the others, and adding a job moves no other job.
Used by `python -m functions.scrape --shard 2/4` on Heroku (N Scheduler entries) and by the
AWS dispatcher (one queue message per shard).
"""

import re

from shared.core.errors import ConfigError


class ShardError(ConfigError):
    """A --shard that is not I/N."""


def parse(spec: str) -> tuple[int, int]:
    """'2/4' -> (2, 4); shards are numbered from 1."""
    match = re.fullmatch(r"(\d+)/(\d+)", spec.strip())
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ShardError(f"--shard {spec} must be I/N with 1 <= I <= N, e.g. 2/4")
    return int(match.group(1)), int(match.group(2))


def shard_of(name: str, count: int) -> int:
    """The shard (1..count) that job `name` belongs to."""
    import hashlib  # here: only the dispatcher shards, and OpenSSL's hashes cost a cold start 5-10 ms

    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count + 1


def select(jobs: list, index: int, count: int) -> list:
    return [job for job in jobs if shard_of(job.name, count) == index]
