"""The one result type: what happened to one job in one run, for every kind.

Each result is one line (`name: outcome: reason (notice)`), printed once by the entry
adapter, and decides the run's exit code: 2 if a job could not be used (`invalid`), else 1
if any failed, else 0.
"""

from dataclasses import dataclass

from shared.core import errors
from shared.core.text import one_line

# Every outcome a result may have.
NEW = "new"  # scrape: a target's first check
UNCHANGED = "unchanged"  # scrape: the same content as last time (a 304 included)
CHANGED = "changed"  # scrape: new content
OK = "ok"  # refresh: the statement ran
SUCCESSES = (NEW, UNCHANGED, CHANGED, OK)  # outcomes that end a failure streak
DUPLICATE = "duplicate"  # this scheduled run was already done: nothing was repeated
ERROR = "error"  # the job ran and failed (a page, CARTO, the database)
SKIPPED = "skipped"  # not started: the run's time ran out
INVALID = "invalid"  # the job could not be used: its configuration is wrong (exit 2)
FAILURES = (ERROR, SKIPPED, INVALID)


@dataclass(frozen=True)
class Result:
    name: str
    outcome: str
    reason: str | None = None
    notice: str | None = None  # e.g. a notification that failed; the outcome stands
    seconds: float | None = None  # how long the job took
    retry: bool = False  # the platform should run this same run again (Lambda: raise)

    @property
    def failed(self) -> bool:
        return self.outcome in FAILURES

    @property
    def exit_code(self) -> int:
        if self.outcome == INVALID:
            return errors.USAGE
        return errors.FAILED if self.failed else 0

    def line(self) -> str:
        """One printable line, whatever a server put in the reason (shared/core/text.py)."""
        return one_line(f"{self.name}: {self.outcome}" + (f": {self.reason}" if self.reason else "")
                        + (f" ({self.notice})" if self.notice else ""), None)


def exit_code(results: list[Result]) -> int:
    return max((r.exit_code for r in results), default=0)
