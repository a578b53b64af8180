"""The one unified diff of two contents, for notifications, the report and `history diff`.

Lines the two share at the top and bottom are set aside first, beyond the context, and at most
`max_lines` of what is left are compared: difflib's cost grows with the square of the lines it
compares, and pages differ in a few places. Hunk headers still count from the top of the text.
"""

import difflib


def hunks(before: str, after: str, context: int = 2, max_lines: int | None = None) -> list[str]:
    """The unified diff's lines without its ---/+++ header."""
    old, new = before.splitlines(), after.splitlines()
    start = 0
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    end = 0
    while end < min(len(old), len(new)) - start and old[-1 - end] == new[-1 - end]:
        end += 1
    skip = max(0, start - context)
    old, new = old[skip:len(old) - max(0, end - context)], new[skip:len(new) - max(0, end - context)]
    if max_lines is not None:
        old, new = old[:max_lines], new[:max_lines]
    lines = list(difflib.unified_diff(old, new, n=context, lineterm=""))[2:]
    return [_shift(line, skip) for line in lines]


def _shift(line: str, offset: int) -> str:
    """A hunk header counted from the top of the whole text."""
    if not offset or not line.startswith("@@ "):
        return line
    old, new = line[3:line.index(" @@")].split(" ")

    def moved(part: str) -> str:
        first, _, count = part[1:].partition(",")
        return f"{part[0]}{int(first) + offset}" + (f",{count}" if count else "")

    return f"@@ {moved(old)} {moved(new)} @@"
