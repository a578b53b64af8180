"""What pg8000 reads through pgwire's bounded reader: every message under the limits exactly as
the server sent it, a row over them with its values NULL, a notice or error over them cut to its
first bytes; whatever the messages and however the reads are split. Property-based, on byte
streams (the connection itself is tested against the real PostgreSQL in test_refresh_limits)."""

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core import pgwire

LIMITS = pgwire.Limits(row_bytes=64, message_bytes=32)


def message(code: bytes, body: bytes) -> bytes:
    return code + struct.pack("!I", len(body) + 4) + body


def data_row(values: list[bytes | None]) -> bytes:
    body = struct.pack("!h", len(values))
    for value in values:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return message(b"D", body)


def expected(raw: bytes) -> bytes:
    """`raw` as the reader should pass it on."""
    out, i = b"", 0
    while i < len(raw):
        code, length = raw[i:i + 1], struct.unpack("!I", raw[i + 1:i + 5])[0]
        body = raw[i + 5:i + 1 + length]
        if code == b"D" and len(body) > LIMITS.row_bytes:
            columns = struct.unpack("!h", body[:2])[0]
            out += message(b"D", body[:2] + b"\xff\xff\xff\xff" * columns)
        elif code in (b"N", b"E") and len(body) > LIMITS.message_bytes:
            out += message(code, body[:LIMITS.message_bytes] + b"\x00\x00")
        else:
            out += raw[i:i + 1 + length]
        i += 1 + length
    return out


def read_all(raw: bytes, sizes: list[int]) -> bytes:
    reader = pgwire._BoundedReader(io.BufferedReader(io.BytesIO(raw)), LIMITS)
    out, k = b"", 0
    while True:
        chunk = reader.read(sizes[k % len(sizes)])
        k += 1
        if not chunk:
            return out
        out += chunk


values = st.one_of(st.none(), st.binary(max_size=50))
messages = st.one_of(
    st.lists(values, max_size=6).map(data_row),
    st.tuples(st.sampled_from([b"N", b"E"]), st.binary(max_size=80)).map(lambda m: message(m[0], m[1] + b"\x00")),
    st.tuples(st.sampled_from([b"C", b"Z", b"T", b"S"]), st.binary(max_size=200)).map(lambda m: message(*m)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, max_size=12), st.lists(st.integers(1, 300), min_size=1, max_size=5))
def test_messages_pass_whole_or_cut_to_the_limits(stream, sizes):
    raw = b"".join(stream)
    assert read_all(raw, sizes) == expected(raw)


def test_a_huge_row_is_read_in_pieces_and_never_held():
    raw = data_row([b"x" * 5_000_000, b"y"]) + message(b"Z", b"I")
    reader = pgwire._BoundedReader(io.BufferedReader(io.BytesIO(raw)), LIMITS)
    head = reader.read(5)
    assert head[:1] == b"D" and struct.unpack("!I", head[1:])[0] == 4 + 2 + 8
    assert reader.read(10) == struct.pack("!h", 2) + b"\xff" * 8
    assert reader.read(5) == b"Z\x00\x00\x00\x05"


def test_a_length_that_cannot_be_is_a_broken_connection():
    reader = pgwire._BoundedReader(io.BufferedReader(io.BytesIO(b"D\x00\x00\x00\x02rest")), LIMITS)
    with pytest.raises(ConnectionError, match="malformed"):
        reader.read(5)
