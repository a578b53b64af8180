"""The job kinds, one line each. Everything above the kinds reads this list: the jobs file's
sections, the entry points, the schema, the AWS plan, the Heroku Scheduler entries, the report
and invoke-local. A third kind is its own package (exporting its `Kind` from kind.py) plus one
line here."""

from shared.core.kind import Kind
from shared.refresh.kind import KIND as REFRESH
from shared.scrape.kind import KIND as SCRAPE

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    SCRAPE,
    REFRESH,
)}


def by_command(command: str) -> Kind:
    return next(kind for kind in KINDS.values() if kind.command == command)
