"""The one bounded diff (shared/notify/diff.py): the same unified diff as difflib where difflib
is cheap, a valid one in bounded time where it is not."""

import difflib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.notify import diff

lines = st.lists(st.sampled_from(["a", "b", "c", "d", "", "x y"]), max_size=40)


@settings(max_examples=400, deadline=None)
@given(lines, lines, st.integers(min_value=1, max_value=30))
def test_opcodes_rebuild_the_new_side_and_equal_ranges_are_equal(old, new, small):
    diff.SMALL, saved = small, diff.SMALL  # force the anchored path on small inputs too
    try:
        ops = diff.opcodes(old, new)
    finally:
        diff.SMALL = saved
    rebuilt = []
    i = j = 0
    for tag, i1, i2, j1, j2 in ops:
        assert (i1, j1) == (i, j)
        if tag == "equal":
            assert old[i1:i2] == new[j1:j2]
        rebuilt += new[j1:j2]
        i, j = i2, j2
    assert (i, j) == (len(old), len(new)) and rebuilt == new


@settings(max_examples=400, deadline=None)
@given(lines, lines, st.integers(min_value=0, max_value=3))
def test_hunks_are_written_as_difflib_writes_them(old, new, context):
    ops = difflib.SequenceMatcher(None, old, new).get_opcodes()
    assert diff._unified(old, new, ops, context) == list(difflib.unified_diff(old, new, n=context, lineterm=""))[2:]


def patched(before: list[str], hunk_lines: list[str]) -> list[str]:
    """Apply unified hunks to `before` (a minimal patch)."""
    out, at = [], 0
    for line in hunk_lines:
        if line.startswith("@@ "):
            start = int(line.split()[1][1:].split(",")[0])
            length = line.split()[1].split(",")
            start = start - 1 if len(length) == 1 or length[1] != "0" else start
            out += before[at:start]
            at = start
        elif line.startswith("-"):
            at += 1
        elif line.startswith("+"):
            out.append(line[1:])
        else:
            out.append(before[at])
            at += 1
    return out + before[at:]


def test_two_large_versions_diff_in_bounded_time_and_the_diff_is_right():
    rng = random.Random(7)
    old = [f"row {i}: {rng.random():.12f}" for i in range(100_000)]  # about 3 MB
    new = list(old)
    for k in range(0, len(new), 5):  # a fifth of the lines changed, spread over the whole page
        new[k] = f"changed {k}"
    del new[50_000:50_100]
    new[70_000:70_000] = ["inserted"] * 50
    result = diff.hunks("\n".join(old), "\n".join(new), 3)
    assert patched(old, result) == new
    assert sum(line.startswith("+") for line in result) == sum(1 for k in range(0, 100_000, 5)
                                                               if not 50_000 <= k < 50_100) + 50


def test_versions_with_nothing_in_common_are_all_removed_then_added():
    old, new = ["x"] * 30_000, ["y"] * 30_000
    result = diff.hunks("\n".join(old), "\n".join(new), 3)
    assert result[0] == "@@ -1,30000 +1,30000 @@" and len(result) == 60_001
