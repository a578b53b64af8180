"""The one unified diff of two contents, for notifications, the report, the feed and the history
tools (`history diff`, `history test`).

Its cost is bounded whatever the contents: difflib's matcher grows with the square of the lines
it compares (two 4.5 MB versions took minutes), so it only ever sees small regions. Lines the
two share at the top and bottom are set aside first; what is left, when large, is cut at the
lines that occur exactly once in each side and in the same order (the anchors of a patience
diff, found in n log n); each region between anchors is trimmed again and compared by difflib
when small, split again when large, and shown as removed then added when nothing anchors it.
Small inputs take difflib's path alone, so their diffs are exactly `diff -u`-like as before.
`max_lines` additionally cuts what notifications show.
"""

import difflib
from bisect import bisect_left

SMALL = 1_000_000  # difflib compares a region when (its old lines) x (its new lines) is at most this


def hunks(before: str, after: str, context: int = 2, max_lines: int | None = None) -> list[str]:
    """The unified diff's lines without its ---/+++ header. Hunk headers count from the top of
    the whole text, also when `max_lines` cuts what is compared."""
    old, new = before.splitlines(), after.splitlines()
    start = _common_prefix(old, new, 0, 0, len(old), len(new))
    end = _common_suffix(old, new, start, start, len(old), len(new))
    skip = max(0, start - context)
    old, new = old[skip:len(old) - max(0, end - context)], new[skip:len(new) - max(0, end - context)]
    if max_lines is not None:
        old, new = old[:max_lines], new[:max_lines]
    if len(old) * len(new) <= SMALL:
        lines = list(difflib.unified_diff(old, new, n=context, lineterm=""))[2:]
    else:
        lines = _unified(old, new, opcodes(old, new), context)
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


def opcodes(old: list[str], new: list[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib-style opcodes (tag, i1, i2, j1, j2) turning `old` into `new`, in bounded time."""
    found: list[tuple[str, int, int, int, int]] = []
    regions = [(0, len(old), 0, len(new))]
    while regions:
        alo, ahi, blo, bhi = regions.pop()
        prefix = _common_prefix(old, new, alo, blo, ahi, bhi)
        suffix = _common_suffix(old, new, alo + prefix, blo + prefix, ahi, bhi)
        if prefix:
            found.append(("equal", alo, alo + prefix, blo, blo + prefix))
        if suffix:
            found.append(("equal", ahi - suffix, ahi, bhi - suffix, bhi))
        alo, blo, ahi, bhi = alo + prefix, blo + prefix, ahi - suffix, bhi - suffix
        if alo == ahi and blo == bhi:
            continue
        if alo == ahi or blo == bhi or (ahi - alo) * (bhi - blo) <= SMALL:
            matcher = difflib.SequenceMatcher(None, old[alo:ahi], new[blo:bhi])
            found += [(tag, alo + i1, alo + i2, blo + j1, blo + j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes()]
            continue
        anchors = _anchors(old, new, alo, ahi, blo, bhi)
        if not anchors:  # nothing in common to align on: all of it changed
            found.append(("replace", alo, ahi, blo, bhi))
            continue
        i, j = alo, blo
        for a, b in anchors:
            found.append(("equal", a, a + 1, b, b + 1))
            regions.append((i, a, j, b))
            i, j = a + 1, b + 1
        regions.append((i, ahi, j, bhi))
    return _merged(sorted(found, key=lambda op: (op[1], op[3], op[2], op[4])))


def _common_prefix(old, new, alo, blo, ahi, bhi) -> int:
    n = 0
    while alo + n < ahi and blo + n < bhi and old[alo + n] == new[blo + n]:
        n += 1
    return n


def _common_suffix(old, new, alo, blo, ahi, bhi) -> int:
    n = 0
    while ahi - n > alo and bhi - n > blo and old[ahi - 1 - n] == new[bhi - 1 - n]:
        n += 1
    return n


def _anchors(old, new, alo, ahi, blo, bhi) -> list[tuple[int, int]]:
    """Lines found exactly once in old[alo:ahi] and once in new[blo:bhi], as (i, j) pairs in the
    longest run that is in order on both sides (patience sorting: n log n)."""
    seen_old: dict[str, int] = {}
    for i in range(alo, ahi):
        seen_old[old[i]] = -1 if old[i] in seen_old else i
    seen_new: dict[str, int] = {}
    for j in range(blo, bhi):
        seen_new[new[j]] = -1 if new[j] in seen_new else j
    pairs = [(seen_old[line], j) for line, j in seen_new.items()
             if j >= 0 and seen_old.get(line, -1) >= 0]
    pairs.sort(key=lambda pair: pair[1])
    # Longest increasing subsequence of the old positions, in new order.
    tails: list[int] = []  # old position ending the best run of each length
    tail_index: list[int] = []
    back: list[int] = []
    for k, (i, _) in enumerate(pairs):
        at = bisect_left(tails, i)
        back.append(tail_index[at - 1] if at else -1)
        if at == len(tails):
            tails.append(i)
            tail_index.append(k)
        else:
            tails[at], tail_index[at] = i, k
    run, k = [], tail_index[-1] if tail_index else -1
    while k >= 0:
        run.append(pairs[k])
        k = back[k]
    return run[::-1]


def _merged(ops):
    """Adjacent opcodes of one tag as one; a delete next to an insert as a replace."""
    out: list[list] = []
    for tag, i1, i2, j1, j2 in ops:
        if i1 == i2 and j1 == j2:
            continue
        if out and out[-1][2] == i1 and out[-1][4] == j1 and (out[-1][0] == tag or
                                                                {out[-1][0], tag} <= {"delete", "insert", "replace"}):
            last = out[-1]
            last[0] = tag if last[0] == tag else "replace"
            last[2], last[4] = i2, j2
        else:
            out.append([tag, i1, i2, j1, j2])
    return [tuple(op) for op in out]


def _unified(old: list[str], new: list[str], ops, context: int) -> list[str]:
    """Unified diff hunks of `ops`, as difflib.unified_diff writes them (without the header)."""
    lines: list[str] = []
    for group in _grouped(ops, context):
        first, last = group[0], group[-1]
        lines.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [" " + line for line in old[i1:i2]]
                continue
            if tag in ("replace", "delete"):
                lines += ["-" + line for line in old[i1:i2]]
            if tag in ("replace", "insert"):
                lines += ["+" + line for line in new[j1:j2]]
    return lines


def _grouped(ops, context: int):
    """difflib's grouping: hunks with up to `context` lines around each change."""
    ops = list(ops)
    if not ops or all(op[0] == "equal" for op in ops):
        return []
    if ops[0][0] == "equal":
        tag, i1, i2, j1, j2 = ops[0]
        ops[0] = tag, max(i1, i2 - context), i2, max(j1, j2 - context), j2
    if ops[-1][0] == "equal":
        tag, i1, i2, j1, j2 = ops[-1]
        ops[-1] = tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)
    groups, group = [], []
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal" and i2 - i1 > 2 * context:
            group.append((tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - context), max(j1, j2 - context)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


def _range(start: int, stop: int) -> str:
    """A hunk's range as unified diffs write it (difflib's _format_range_unified)."""
    beginning, length = start + 1, stop - start
    if length == 1:
        return f"{beginning}"
    if not length:
        beginning -= 1
    return f"{beginning},{length}"
