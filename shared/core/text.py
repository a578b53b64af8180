"""Text from elsewhere (a server's status line, an answer's error, a stored reason) made safe to
show in one line: `one_line()` is the one function every such piece passes through before it is
printed, logged, stored as a reason or put in a message's one-line field.

Terminals act on control characters: ESC starts sequences that retitle (OSC) or clear (CSI) the
screen, CR returns to the line's start and overwrites it, VT, FF, NEL (U+0085) and the Unicode
line and paragraph separators (U+2028, U+2029) break lines, bidirectional overrides reorder what
is shown. All of them become spaces, runs of spaces one space, so one result stays one line and
shows nothing but its text. Secrets are redacted first, so a cut never leaves part of one.
"""

import re

from shared.core import log

# C0 and C1 controls (ESC, CR, LF, VT, FF, BEL, NEL...), DEL, the line and paragraph separators,
# bidirectional embeddings, overrides and isolates, and lone surrogates (stdout and PostgreSQL
# refuse them).
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]+")
DEFAULT_LIMIT = 2000  # characters of one line, by default


def one_line(text, limit: int | None = DEFAULT_LIMIT) -> str:
    """`text` (anything: it is str()-ed) as one printable line: secrets redacted, control
    characters and line breaks as spaces, runs of whitespace as one space, at most `limit`
    characters (the last an ellipsis when cut)."""
    text = log.redact(str(text))
    text = " ".join(UNPRINTABLE.sub(" ", text).split())
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def plural(count: int, word: str, words: str | None = None) -> str:
    """'1 run', '2 runs', '1,024 check times': a count and its noun, in the number it takes."""
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def when(moment) -> str:
    """A moment as the report and the tools show it: '2026-03-01 08:00 UTC', or 'never'."""
    from datetime import timezone

    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def size(n: float) -> str:
    """Bytes as '512 B', '1.5 kB', '3.2 MB', '1.0 GB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def duration(seconds: float | None) -> str:
    """Seconds as '4.2 s', '3 min 05 s', '2 h 07 min' ('' for None)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
