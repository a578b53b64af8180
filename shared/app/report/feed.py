"""The Atom feed of changes (RFC 4287): `python -m functions.report --feed FILE` (or `-`).

One entry per change of the report's period (a check whose content differs from the check
before; not one that came from an edit of the job's filters, which notifications skip too),
newest first: the target's name, the time, a link to the page and the notification's bounded
diff (shared/notify/messages.unified_diff) as HTML. Feed readers show each entry once: an
entry's id is derived from its target's name, its content's id and the check's time, none of
which a later run changes.

Everything in it came from somewhere else (a page's text, a target's name and URL), so each
piece is first stripped of the characters XML 1.0 cannot carry (control characters, lone
surrogates, U+FFFE/U+FFFF), then redacted (shared/core/log.py) before anything cuts it, then
escaped by the serialiser: no page can make the feed invalid or show a registered secret.
Sizes are bounded: at most MAX_ENTRIES entries, each diff as trimmed as a notification's, and
the whole document at most MAX_BYTES (the oldest entries are left out first).
"""

import html
import os
import re
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

from shared.core import log, names
from shared.core.db import transaction
from shared.core.errors import ConfigError
from shared.notify import messages
from shared.scrape import store

ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml"
MAX_ENTRIES = 100
MAX_BYTES = 1024 * 1024  # the whole document; feed readers fetch it every few minutes
HEAD_BYTES = 16 * 1024  # kept for the feed's own elements (the self link: up to 2,000 characters)
BODY_CHARS = 5_000_000  # a version is compared on its first characters (a fetched page is at most 5 MB)
NAME_CHARS = 200
URL_CHARS = 2000  # a longer URL is shown cut, and not linked (a cut URL leads elsewhere)
TITLE = "Changes to watched pages"
# The namespace of every id in the feed (uuid5): fixed, so the ids never change between runs.
ID_NAMESPACE = uuid.UUID("4a0c4d2e-8f3b-5b8e-9c61-2d7f1e0a9b35")

# What XML 1.0 cannot carry (its Char production), and the C1 controls it only discourages.
_NOT_XML = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# What an href keeps as it is; the rest (spaces, quotes, '<', non-ASCII...) is %-encoded. '%'
# stays: the URL's own escapes.
_URL_SAFE = log.URL_SAFE + "#[]%"


def xml_text(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry."""
    return _NOT_XML.sub("", text)


def clean(text: str) -> str:
    """Remote text as the feed may show it: stripped, then redacted. Stripping comes first: a
    secret with a control character inside it would otherwise escape redaction and then show
    whole once the character is gone."""
    return log.redact(xml_text(text))


def check_url(url: str) -> str:
    """The feed's own public URL (--feed-url): an http(s) URL in printable ASCII (a host name
    in its xn-- form, the path %-encoded), or a ConfigError."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if (not parts or parts.scheme not in ("http", "https") or not parts.hostname or len(url) > URL_CHARS
            or not url.isascii() or not url.isprintable() or " " in url):
        raise ConfigError(f"--feed-url must be the feed's public http(s) URL, in ASCII without spaces (up to"
                          f" {URL_CHARS} characters), not {log.redact(url)[:80]!r}")
    return url


def build(con, days: int, now: datetime | None = None, self_url: str | None = None,
          max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> bytes:
    """The feed of the changes since the start of the report's period (`days`, today included),
    as UTF-8 bytes: at most `max_entries` entries and `max_bytes` bytes."""
    now = now or datetime.now(timezone.utc)
    since = datetime.combine(now.date() - timedelta(days=days - 1), time.min, timezone.utc)
    entries, size = [], 0
    with transaction(con):  # one snapshot: no content pruned between the changes and their bodies
        con.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        con.run("SET LOCAL jit = off")  # as for the report's change counts: compiling costs more than running
        found, total = store.changes(con, since, max_entries)
        kept: dict[int, str] = {}  # the bodies of the entry before: the next one often needs one of them
        for change in found:
            wanted = [change.previous_id, change.content_id]
            kept = {i: kept[i] for i in wanted if i in kept}
            kept.update(store.bodies(con, [i for i in wanted if i not in kept], BODY_CHARS))
            made = entry(change, kept[change.previous_id], kept[change.content_id])
            length = len(ET.tostring(made, encoding="utf-8"))
            if size + length > max_bytes - HEAD_BYTES:
                break  # newest first: what is left out is older
            entries.append(made)
            size += length
    return document(entries, total, since, now, self_url)


def document(entries: list[ET.Element], total: int, since: datetime, now: datetime,
             self_url: str | None = None) -> bytes:
    """The feed of `entries` (made by entry(), newest first; `total`: the changes there were) as
    UTF-8 bytes. `self_url`: its public URL, as check_url() passed it."""
    feed = ET.Element("feed", xmlns=ATOM)
    feed.text = "\n"
    _add(feed, "id", _id("feed", self_url or ""))
    _add(feed, "title", TITLE)
    shown = f"; the newest {len(entries)} of {total}" if len(entries) < total else ""
    _add(feed, "subtitle", f"Changes since {since:%Y-%m-%d} (UTC), newest first{shown}")
    _add(feed, "updated", entries[0].findtext("updated") if entries else _when(now))
    author = _add(feed, "author")
    _add(author, "name", names.NAME)
    _add(feed, "generator", names.NAME, version=names.VERSION)
    if self_url:
        _add(feed, "link", rel="self", type=MEDIA_TYPE, href=_href(clean(self_url)) or "")
    for element in feed:
        element.tail = "\n"
    feed.extend(entries)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="utf-8", xml_declaration=False)


def write(path: Path, data: bytes) -> None:
    """Write the feed whole or not at all: a web server or feed reader reading the file while it
    is written sees the old feed, never half of the new one."""
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        part.write_bytes(data)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def entry(change: store.Change, before: str, after: str) -> ET.Element:
    """The entry of one change; `before` and `after`: the two contents, as stored."""
    name = clean(change.target)[:NAME_CHARS]
    url = clean(change.url)
    href = _href(url)
    shown_url = url if len(url) <= URL_CHARS else url[:URL_CHARS] + "…"
    (before, cut_before), (after, cut_after) = _version(before), _version(after)
    diff = messages.unified_diff(before, after)  # redacted, then trimmed as a notification's
    when = change.at.astimezone(timezone.utc)
    page = f'<a href="{html.escape(href)}">{html.escape(shown_url)}</a>' if href else html.escape(shown_url)
    content = (f"<p>{html.escape(name)} changed at {when:%Y-%m-%d %H:%M:%S} UTC: {page}</p>\n"
               f"<pre>{html.escape(diff)}</pre>")
    if cut_before or cut_after:
        content += f"\n<p>Compared on the first {BODY_CHARS:,} characters of each version.</p>"
    made = ET.Element("entry")
    made.text = "\n"
    _add(made, "id", _id("change", change.target, str(change.content_id), when.isoformat()))
    _add(made, "title", f"{name} changed")
    _add(made, "updated", _when(when))
    if href:
        _add(made, "link", rel="alternate", type="text/html", href=href)
    _add(made, "content", content, type="html")
    for child in made:
        child.tail = "\n"
    made.tail = "\n"
    return made


def _version(body: str) -> tuple[str, bool]:
    """A stored body as it is compared: stripped and redacted; one longer than BODY_CHARS is cut
    to its whole lines before that (a secret cut at its end would otherwise show in part)."""
    if len(body) <= BODY_CHARS:
        return clean(body), False
    return clean(body[:body.rfind("\n", 0, BODY_CHARS) + 1]), True


def _href(url: str) -> str | None:
    """An http(s) URL as an Atom href (an IRI: spaces, quotes and the like %-encoded), or None
    for anything else, or a URL too long to show whole."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        return None
    if scheme.lower() not in ("http", "https") or len(url) > URL_CHARS:
        return None
    return quote(url, safe=_URL_SAFE)


def _id(*parts: str) -> str:
    """A urn:uuid: made from `parts` (which may hold anything a database or page held)."""
    return f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, chr(10).join(parts).encode('utf-8', 'surrogatepass'))}"


def _when(at: datetime) -> str:
    """An RFC 3339 time in UTC, as Atom's date constructs want it."""
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = text
    return element
