"""Noise filters: what of a page counts, applied before hashing.

Pages that embed a CSRF token, a timestamp or "generated in 12 ms" differ on every request,
so every check would look like a change (the seed article's Discussion). A job names the
parts that matter and the parts that don't:

    select = ["#agenda"]            # keep only what these CSS selectors match (each must match)
    drop = [".ads", "time"]         # remove what these match (matching nothing is fine)
    ignore = ['Generated in \\d+ ms'] # remove text matching these regular expressions
    text = true                     # HTML -> text (default: on when any filter above is set)
    whitespace = "ignore"           # spacing and blank lines don't count (or "keep")

The steps run in the order of STEPS; what comes out is stored as the content's body.
A job without filter keys stores the page as fetched. A `select` selector that matches
nothing is a FilterError: the check fails, nothing is stored, nothing changes.

The HTML library (selectolax, Lexbor engine) is imported inside the functions that parse,
so importing this module costs nothing at a Lambda cold start.

A hostile page or pattern can make a step run for hours (a regular expression that backtracks
catastrophically, 10,000 nested elements each selected): a run applies filters in a worker
process it can stop (shared/scrape/sandbox.py, which runs apply_settings), so a job's timeout
bounds them. Patterns are checked when the jobs file is read (check_pattern).
"""

import json
import re
from dataclasses import dataclass, field

from shared.core import log

WHITESPACE_MODES = ("ignore", "keep")

# Not part of what a reader sees.
INVISIBLE = "script, style, noscript, template, head"
# Elements that start a new line in text; inline ones (b, a, span, ...) don't.
BLOCKS = frozenset(
    "address article aside blockquote body caption dd details dialog div dl dt fieldset figcaption "
    "figure footer form h1 h2 h3 h4 h5 h6 header hr html legend li main nav ol p pre section summary "
    "table tbody td tfoot th thead title tr ul".split()
)


class FilterError(Exception):
    """The filters could not be applied to this page; the message is the check's error."""


@dataclass
class Work:
    """A page on its way through the steps: a parsed tree first, text at the end."""

    html: str
    tree: object = None  # selectolax parser, once parsed
    parts: list = field(default_factory=list)  # the nodes kept by `select` (empty: whole page)
    text: str | None = None  # set by `render`


def _tree(work: Work):
    if work.tree is None:
        from selectolax.lexbor import LexborHTMLParser  # lazy: see the module docstring

        work.tree = LexborHTMLParser(work.html)
    return work.tree


def _css(node, selector: str) -> list:
    from selectolax.lexbor import SelectolaxError

    try:
        return node.css(selector)
    except SelectolaxError:
        raise FilterError(f"selector {selector!r} is not valid CSS") from None


def drop(work: Work, selectors: tuple[str, ...]) -> None:
    tree = _tree(work)
    for selector in selectors:
        for node in _css(tree.root, selector):
            node.decompose()


def select(work: Work, selectors: tuple[str, ...]) -> None:
    tree = _tree(work)
    for selector in selectors:
        found = _css(tree.root, selector)
        if not found:
            raise FilterError(f"selector {selector!r} matched nothing")
        work.parts.extend(found)


def render(work: Work, as_text: bool) -> None:
    """Turn the kept parts (or the whole page) into text, or into their HTML."""
    if work.tree is None and not as_text:
        work.text = work.html  # nothing was selected or dropped: the page as fetched
        return
    tree = _tree(work)
    parts = work.parts or [tree.root]
    if not as_text:
        work.text = "\n".join(node.html for node in parts)
        return
    for part in parts:  # what a reader never sees, inside what was kept
        for node in _css(part, INVISIBLE):
            if node.mem_id != part.mem_id:
                node.decompose()
    work.text = "\n".join(_node_text(node) for node in parts)


def _node_text(root) -> str:
    """Text of a subtree, with line breaks where blocks begin and end (no recursion: pages nest deep)."""
    out: list[str] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, str):  # a block's end marker
            out.append(node)
            continue
        if node.tag == "-text":
            out.append(node.text_content or "")
            continue
        if node.tag == "br":
            out.append("\n")
            continue
        if node.tag.startswith("-") and node.tag != "-document":
            continue  # comments, doctype
        if node.tag in BLOCKS:
            out.append("\n")
            stack.append("\n")
        stack.extend(reversed(list(node.iter(include_text=True))))
    return "".join(out)


def ignore(work: Work, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        work.text = re.sub(pattern, "", work.text, flags=re.MULTILINE)


def whitespace(work: Work, mode: str) -> None:
    if mode == "ignore":
        lines = (" ".join(line.split()) for line in work.text.splitlines())
        work.text = "\n".join(line for line in lines if line)


# Config key -> step, in the order they run. `render` always runs between the HTML steps
# and the text steps (see apply).
HTML_STEPS = {"drop": drop, "select": select}
TEXT_STEPS = {"ignore": ignore, "whitespace": whitespace}


def settings(job) -> dict:
    """The job's effective filter settings: only keys that do something."""
    chosen = {key: getattr(job, key) for key in ("select", "drop", "ignore") if getattr(job, key)}
    if not chosen and not job.text:
        return {}  # no filters: the page is stored as fetched
    as_text = job.text if job.text is not None else True
    return {**chosen, "text": as_text, "whitespace": job.whitespace}


def fingerprint(job) -> str:
    """Identifies the job's filter settings, so a change of filters is not taken for a change of page."""
    chosen = settings(job)
    if getattr(job, "json", None):  # what of a JSON answer is kept: an edit is no change of page either
        chosen = {**chosen, "json": job.json}
    import hashlib  # here: OpenSSL's hashes cost a cold start 5-10 ms, and building a job needs none

    return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]


def apply(job, page: str) -> str:
    """The page as the job's filters see it: the body to hash and store. In this process, with
    no time limit: a run filters in shared/scrape/sandbox.py, where filters can be stopped."""
    return apply_settings(settings(job), page)


def apply_settings(chosen: dict, page: str) -> str:
    """apply() for settings() already taken (lists or tuples alike): what a sandbox worker runs."""
    if not chosen:
        return page
    work = Work(page)
    for key, step in HTML_STEPS.items():
        if key in chosen:
            step(work, chosen[key])
    render(work, chosen["text"])
    for key, step in TEXT_STEPS.items():
        if key in chosen:
            step(work, chosen[key])
    return work.text


# Longer patterns are refused when the jobs file is read: they take long to compile, and a
# noise filter that needs more than this is better written as a few patterns or a `drop`.
MAX_PATTERN_CHARS = 10_000


def check_pattern(pattern: str) -> None:
    """Raise ValueError if `pattern` cannot serve as an `ignore` pattern (used when the jobs
    file is read): not a regular expression, too long, or too large or deep for the compiler."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"key 'ignore': {_short(pattern)} is too large to compile: patterns are limited "
                         f"to {MAX_PATTERN_CHARS:,} characters")
    try:
        re.compile(pattern, flags=re.MULTILINE)
    except re.error as exc:
        raise ValueError(f"key 'ignore': {_short(pattern)} is not a valid regular expression: {exc}") from None
    except (RecursionError, OverflowError, MemoryError) as exc:  # nesting or repeat counts too large
        reason = {RecursionError: "nested too deeply"}.get(type(exc), str(exc) or type(exc).__name__)
        raise ValueError(f"key 'ignore': {_short(pattern)} is too large to compile ({reason})") from None


def _short(pattern: str) -> str:
    pattern = log.redact(pattern)  # before the cut: a cut secret would no longer match, and part of it show
    return repr(pattern) if len(pattern) <= 60 else f"{pattern[:40]!r}... ({len(pattern):,} characters)"


def check_selector(selector: str) -> None:
    """Raise ValueError if `selector` is not valid CSS (used when the jobs file is read)."""
    from selectolax.lexbor import LexborHTMLParser, SelectolaxError

    try:
        LexborHTMLParser("<p></p>").css(selector)
    except SelectolaxError:
        raise ValueError(f"selector {selector!r} is not valid CSS") from None


def check_trigger(pattern: str) -> None:
    """Raise ValueError if `pattern` cannot serve as `notify_if`. It runs beside the run, not in
    the filter sandbox, so it is bounded by its shape instead of a worker's timeout: no repeat
    inside a repeated group (`(a+)+`, `(a|ab)*`): without one, a regular expression's search
    is at worst quadratic in a line, and lines are cut at 2,000 characters."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("key 'notify_if' must be a non-empty regular expression")
    try:
        check_pattern(pattern)
    except ValueError as exc:
        raise ValueError(str(exc).replace("key 'ignore'", "key 'notify_if'", 1)) from None
    import re._parser as parser  # the standard library's own parser: what re.compile reads

    def nested(items, repeated: bool) -> bool:
        for op, arg in items:
            name = str(op)
            if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                if repeated or nested(arg[2], True):
                    return True
            elif name == "BRANCH":
                if repeated or any(nested(branch, repeated) for branch in arg[1]):
                    return True
            elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
                if nested(arg[-1], repeated):
                    return True
            elif name in ("ASSERT", "ASSERT_NOT") and nested(arg[1], repeated):
                return True
        return False

    if nested(parser.parse(pattern), False):
        raise ValueError(f"key 'notify_if': {_short(pattern)} repeats a group that itself repeats or branches:"
                         " such a pattern can take hours on one line; write it without nesting")

