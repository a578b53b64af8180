"""One error base for everything a run can refuse or fail at, carrying its exit code.

The entry adapter (shared/app/entry.py) catches `JobError` once: the command line prints
its one line and exits with `exit_code`; Lambda logs the line and raises it, so the invocation
counts as an error. Anything else that escapes is a bug, and gets a traceback.
"""

USAGE = 2  # the jobs file, the environment, an argument or an event is wrong: fix it, then rerun
FAILED = 1  # the work failed (a page, CARTO, the database): it may pass next time


class JobError(Exception):
    """A run ends with this message (one line, no secret in it) and exit code."""

    exit_code = FAILED


class ConfigError(JobError, ValueError):
    """The jobs file, the environment or the command line is wrong; the message says where:
    which file, job and key."""

    exit_code = USAGE


class EventError(ConfigError):
    """A Lambda event (or SQS record) does not have a shape we understand."""


class WorkFailed(JobError):
    """The run could not do its work (e.g. the database is unreachable)."""
