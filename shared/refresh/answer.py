"""A JSON answer scanned as it arrives: its rows counted, only a bounded part of it kept.

An answer can be any size (a statement may return millions of rows) and a refresh needs little
of it (`error`, `hint`, `total_rows`, the first row...), so AnswerReader keeps just that, fed
chunk by chunk: memory does not grow with what CARTO sends.
"""

import functools
import json
import re

from shared.core import log
from shared.core.text import one_line as text_one_line

# What one answer may cost in memory, whatever its size: read CHUNK_BYTES at a time; keep at
# most KEEP_KEYS top-level values (the rows aside), KEEP_BYTES each, and the first row.
CHUNK_BYTES = 64 * 1024
KEEP_BYTES = 16 * 1024
KEEP_KEYS = 32
# Of the answer as it came, for messages about answers that are not JSON: HEAD_CHARS shown, and
# SECRET_MARGIN bytes more kept, so that a key cut off at the end can be recognised (below).
HEAD_CHARS = 200
# A secret that straddles the place where a kept part of an answer is cut could not be redacted
# (only whole secrets match): a kept part that was cut loses this many characters at its end,
# after redaction, which removes any piece of a secret up to that long (a JWT is about 1 kB).
SECRET_MARGIN = 4096
HEAD_BYTES = 512 + SECRET_MARGIN
MESSAGE_CHARS = 2000  # what one_line() keeps of a message by default
# Kept however many keys came before them: what decides success, and what is reported.
ALWAYS_KEEP = frozenset({"error", "hint", "detail", "context", "total_rows", "status", "failed_reason",
                         "job_id", "jobId"})


class Answer:
    """What a refresh needs of one answer. `body`: its top-level keys, `rows` aside (values
    longer than KEEP_BYTES cut: a string to its beginning and "…", anything else None); None
    when the answer is not a JSON object, and `problem` says why. `rows`: how many `rows` it
    had (None without a `rows` array); `first_row`: the first, parsed (None if cut).
    (A plain class: a dataclass costs the Lambda's cold start a little more.)"""
    __slots__ = ("body", "rows", "first_row", "size", "problem")

    def __init__(self, body: dict | None, rows: int | None = None, first_row=None, size: int = 0,
                 problem: str | None = None):
        self.body, self.rows, self.first_row, self.size, self.problem = body, rows, first_row, size, problem


def _nested(levels: int) -> bytes:
    """A regular expression for one JSON array or object nested at most `levels` deep
    (brackets are not paired by kind: this finds where a value ends, it does not validate)."""
    atom = rb'[^"{}\[\]]++|"(?:[^"\\]++|\\.)*+"'
    value = rb"[{\[](?:" + atom + rb")*+[}\]]"
    for _ in range(levels - 1):
        value = rb"[{\[](?:" + atom + rb"|" + value + rb")*+[}\]]"
    return value


# One token: a string (group 1 is its closing quote, absent when the chunk ends inside it), a
# bracket, a comma, a colon, or the run of bytes of a number, true, false or null.
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+(")?|[\[\]{},:]|[^\s"\[\]{},:]++', re.S)
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+', re.S)
_SCALAR = re.compile(rb'[^\s"\[\]{},:]++')
# The rows of an answer, most often objects a few levels deep: many at once, at C speed.
# Compiled on first use (some milliseconds: not at import, in a Lambda's cold start).
_ROW_LEVELS = 8


@functools.cache
def _row_patterns() -> tuple[re.Pattern, re.Pattern]:
    """(one row, several rows with their commas)."""
    row = _nested(_ROW_LEVELS)
    return re.compile(row, re.S), re.compile(rb"(?:[\s,]*+(?:" + row + rb"))++", re.S)
_QUOTE, _OPEN_OBJECT, _OPEN_ARRAY, _CLOSE_OBJECT, _CLOSE_ARRAY, _COMMA, _COLON = b'"{[}],:'


class _Capture:
    """The bytes of one thing being kept, up to KEEP_BYTES: a top-level key, the value of key
    `name`, or the first row; `depth`: where it sits."""
    __slots__ = ("kind", "name", "depth", "data", "cut")

    def __init__(self, kind: str, depth: int, name: str | None = None):
        self.kind, self.name, self.depth, self.data, self.cut = kind, name, depth, bytearray(), False

    def add(self, data: bytes, start: int, end: int) -> None:
        room = KEEP_BYTES - len(self.data)
        if end - start > room:
            self.cut, end = True, start + max(0, room)
        if end > start:
            self.data += data[start:end]


class AnswerReader:
    """Reads a JSON answer chunk by chunk and keeps only what a refresh reports: each top-level
    key's value (those of ALWAYS_KEEP, and KEEP_KEYS others at most, each cut at KEEP_BYTES),
    how many elements `rows` has, and the first of them. What it holds is bounded by those
    limits, whatever the size of the answer: its `peak` (the most bytes it kept at once) is
    there for tests to check.

    It finds where values begin and end (strings, escapes, brackets), cut anywhere by chunk
    boundaries; it does not validate what it skips, but what it keeps is parsed with `json`.
    """

    def __init__(self):
        self.size = self.peak = 0
        self.head = bytearray()
        self.depth = 0  # 1 inside the top-level object, 2 inside one of its values, ...
        self.started = self.is_object = self.done = self.trailing = False
        self.in_string = self.escape_pending = self.in_scalar = False  # a token going on in the next chunk
        self.expect_key = False  # at depth 1: a string now is a key, not a value
        self.key: str | None = None  # the top-level key whose value comes next
        self.in_rows = False
        self.rows: int | None = None
        self.first_row: tuple[bytes, bool] | None = None
        self.values: dict[str, tuple[bytes, bool]] = {}
        self.capture: _Capture | None = None
        self.capture_from = 0

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if len(self.head) < HEAD_BYTES:
            self.head += data[:HEAD_BYTES - len(self.head)]
        if self.size == 0 and data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
            data = data[3:]
        self.size += len(data)
        if self.started and not self.is_object or self.trailing:
            return  # not an object: only the head is kept, for the message
        n, pos = len(data), 0
        self.capture_from = 0
        if self.in_string:  # a string went on past the last chunk
            if self.escape_pending:
                self.escape_pending, pos = False, 1
            end = _STRING_REST.match(data, min(pos, n)).end()
            if end >= n:
                pos = n
            elif data[end] == _QUOTE:
                self.in_string, pos = False, end + 1
                self._token_end(data, pos)
            else:  # a backslash ends the chunk: it escapes the next one's first byte
                self.escape_pending, pos = True, n
        elif self.in_scalar:
            match = _SCALAR.match(data)
            pos = match.end() if match else 0
            if pos < n:
                self.in_scalar = False
                self._token_end(data, pos)
        if pos < n:
            self._tokens(data, pos, n)
        if self.capture is not None:
            self.capture.add(data, self.capture_from, n)
        kept = sum(len(raw) for raw, _ in self.values.values()) + len(self.head)
        kept += len(self.capture.data) if self.capture is not None else 0
        kept += len(self.first_row[0]) if self.first_row else 0
        self.peak = max(self.peak, kept)

    def _tokens(self, data: bytes, pos: int, n: int) -> None:
        search = _TOKEN.search
        one_row, many_rows = _row_patterns()
        while True:
            if self.in_rows and self.depth == 2 and self.capture is None and self.rows:
                match = many_rows.match(data, pos)  # whole rows: count them without a token each
                if match:
                    self.rows += len(one_row.findall(data, pos, match.end()))
                    pos = match.end()
            match = search(data, pos)
            if match is None:
                return
            start, end = match.span()
            pos, c, depth = end, data[start], self.depth
            if depth == 0:
                if self.done:
                    self.trailing = True  # more after the object: not JSON
                    return
                if not self.started:
                    self.started, self.is_object = True, c == _OPEN_OBJECT
                    if not self.is_object:
                        return
            if c == _OPEN_OBJECT or c == _OPEN_ARRAY:
                if depth == 1 and not self.expect_key:
                    self._value_start(start, c)
                elif depth == 2 and self.in_rows:
                    self._row_start(start)
                elif depth == 0:
                    self.expect_key = True
                self.depth = depth + 1
            elif c == _CLOSE_OBJECT or c == _CLOSE_ARRAY:
                self.depth = depth = depth - 1
                if depth <= 1:
                    self.in_rows = False
                    self.done = depth == 0
                if self.capture is not None and depth == self.capture.depth:
                    self._finish(data, end)
            elif c == _COMMA:
                if depth == 1:
                    self.expect_key = True
            elif c == _COLON:
                if depth == 1:
                    self.expect_key = False
            else:  # a string or a scalar
                if depth == 1:
                    if self.expect_key:
                        self.key = None
                        self.capture, self.capture_from = _Capture("key", 1), start
                    else:
                        self._value_start(start, c)
                elif depth == 2 and self.in_rows:
                    self._row_start(start)
                if c == _QUOTE:
                    if match.lastindex is None:  # no closing quote in this chunk
                        self.in_string, self.escape_pending = True, end < n
                        return
                elif end == n:
                    self.in_scalar = True
                    return
                self._token_end(data, end)

    def _value_start(self, start: int, c: int) -> None:
        key, self.key = self.key, None
        if key == "rows" and c == _OPEN_ARRAY:
            self.in_rows, self.rows, self.first_row = True, 0, None
        elif key is not None and (len(self.values) < KEEP_KEYS or key in ALWAYS_KEEP or key in self.values):
            self.capture, self.capture_from = _Capture("value", 1, key), start

    def _row_start(self, start: int) -> None:
        self.rows += 1
        if self.rows == 1:
            self.capture, self.capture_from = _Capture("row", 2), start

    def _token_end(self, data: bytes, end: int) -> None:
        if self.capture is not None and self.capture.depth == self.depth:
            self._finish(data, end)

    def _finish(self, data: bytes, end: int) -> None:
        capture, self.capture = self.capture, None
        capture.add(data, self.capture_from, end)
        if capture.kind == "key":
            key = None if capture.cut else _loads(capture.data)
            self.key = key if isinstance(key, str) else None
        elif capture.kind == "row":
            self.first_row = (bytes(capture.data), capture.cut)
        else:
            self.values[capture.name] = (bytes(capture.data), capture.cut)

    def answer(self) -> Answer:
        """What the answer said, once it has all arrived."""
        if not self.started:
            return Answer(None, size=self.size, problem="empty answer" if not self.head.strip() else
                           f"answer is not JSON: {self._head_text()!r}")
        if not self.is_object:
            if self.size <= HEAD_BYTES and (parsed := _loads(self.head)) is not None:
                return Answer(None, size=self.size, problem=f"answer is JSON but not an object: {short(parsed)}")
            return Answer(None, size=self.size, problem=f"answer is not JSON: {self._head_text()!r}")
        if not self.done or self.in_string or self.trailing:
            what = "more after the JSON object" if self.trailing else f"the JSON ended early, after {self.size:,} bytes"
            return Answer(None, size=self.size, problem=f"answer is not JSON ({what}): {self._head_text()!r}")
        body = {}
        for key, (raw, cut) in self.values.items():
            if cut:
                body[key] = _beginning(raw)
                continue
            try:
                body[key] = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
                return Answer(None, size=self.size, problem=f"answer is not JSON (its {key!r} is not):"
                                                             f" {self._head_text()!r}")
        first_row = None
        if self.first_row is not None and not self.first_row[1]:
            first_row = _loads(self.first_row[0])
        return Answer(body, self.rows, first_row, self.size)

    def _head_text(self) -> str:
        """The answer's beginning as a user may read it: JSON escapes undone and secrets redacted
        before anything is cut (a head cut short of the answer loses SECRET_MARGIN too)."""
        text = _readable(self.head.decode("utf-8", "replace"), cut=self.size > len(self.head))
        return one_line(text, HEAD_CHARS)


def _loads(data: bytes):
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        return None


def _beginning(raw: bytes):
    """What can be read of a value cut at KEEP_BYTES: the beginning of a string (or of a list's
    first string, as v2's `error` is), redacted and without its last SECRET_MARGIN characters.
    Anything else is its raw text, so cut: never None, which would read as "no error" when the
    value was a huge `error` object (a 200 with an error must not pass for a success)."""
    text = raw.decode("utf-8", "ignore").lstrip()
    in_list = text.startswith("[") and text[1:].lstrip().startswith('"')
    if in_list:
        text = text[1:].lstrip()
    if text.startswith('"'):
        for trim in range(7):  # a cut escape (\u12) or a backslash: drop it
            try:
                value = json.loads(text[:len(text) - trim] + '"')
            except ValueError:
                continue
            if isinstance(value, str):
                value = _readable(value, cut=True) + "…"
                return [value] if in_list else value
    return _readable(text, cut=True) + "…"


_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|[\"\\/bfnrt])")


def _readable(text: str, cut: bool) -> str:
    """`text` redacted; when it was cut from something longer, without its last SECRET_MARGIN
    characters (where a secret cut in two would hide). JSON escapes in raw JSON text are undone
    first, so a key written as \\u0073k-... is redacted too."""
    if "\\" in text:
        text = _ESCAPE.sub(lambda m: json.loads(f'"{m.group(0)}"'), text)
    text = log.redact(text)
    return text[:max(0, len(text) - SECRET_MARGIN)] if cut else text


def one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    """core.text.one_line with this module's default limit."""
    return text_one_line(text, limit)


def short(body) -> str:
    return one_line(repr(body), HEAD_CHARS)

