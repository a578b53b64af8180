"""What a refresh that succeeded reports, whichever way it ran."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    via: str  # "SQL API", "batch job <id>" or "PostgreSQL": recorded in the run's history
    seconds: float
    total_rows: int | None = None
    note: str | None = None  # why the batch API was used
    value: str | None = None  # a one-row, one-column answer, e.g. "process_data = 4"

    def summary(self) -> str:
        rows = ""
        if self.total_rows is not None:
            rows = f", {self.total_rows} row" + ("" if self.total_rows == 1 else "s")
        value = f": {self.value}" if self.value else ""
        note = f" ({self.note})" if self.note else ""
        how = "on PostgreSQL" if self.via == "PostgreSQL" else f"via {self.via}"
        return f"done {how} in {self.seconds:.2f} s{rows}{value}{note}"
