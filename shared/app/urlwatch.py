"""urlwatch's jobs and cache, read for adoption: `python -m functions.migrate --adopt-urlwatch`.

urlwatch (2.x) keeps its jobs in urls.yaml, one YAML document per job, and its history in a
SQLite cache written by minidb: a table `CacheEntry` (id, guid, timestamp, data, tries, etag),
one row per snapshot saved, where guid is the sha1 of the job's location (`user_visible_url`,
else `url`) and timestamp is seconds since the epoch. It saves a row when a page is new or
changed (not when it is unchanged), and when a check fails: then with the old data and
tries > 0, which is not a snapshot of the page and is skipped here.

A URL job becomes a [[scrape]] job: its name (made name-safe), its url, and the filters that
map: `css` -> select (its `exclude` -> drop), `html2text` -> text = true, `re.sub` without a
replacement -> ignore, `strip` (our default whitespace = "ignore" strips too); `max_tries` ->
alert_after, `timeout` -> timeout, `ignore_cached` -> conditional = false. Everything else is
listed as not mapped, by key (values may be secrets: headers, cookies, data). Our filters run in
a fixed order (drop, select, HTML -> text, ignore, whitespace), and a chain in another order is
mapped with a note. Shell and browser jobs are listed and skipped.
"""

import hashlib
import json
import re
import sqlite3
import tomllib
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from shared.core import log
from shared.core.errors import ConfigError
from shared.core.text import plural
from shared.scrape import filters, request

URL_KEYS_MAPPED = {"url", "name", "filter", "max_tries", "timeout", "ignore_cached", "kind",
                   "headers", "cookies", "method", "data"}
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Mapped:
    """One urlwatch job, as a [[scrape]] table (None when it cannot be one) and notes."""
    location: str  # what urlwatch's guid hashes
    table: dict | None
    notes: list[str] = field(default_factory=list)  # what did not map, and how it differs
    url: str = ""  # as urlwatch has it (the table's may name a ${VAR} instead of a password)

    @property
    def guid(self) -> str:
        return hashlib.sha1(self.location.encode("utf-8")).hexdigest()

    @property
    def name(self) -> str | None:
        return self.table["name"] if self.table else None


# What a urls.yaml may hold. YAML's aliases let a few hundred bytes describe billions of values,
# and nesting is recursion in the parser: both are bounded before anything is built.
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_JOBS = 10_000
MAX_JOB_VALUES = 100_000  # in one job, each alias counted as what it expands to
MAX_VALUES = 1_000_000  # in the whole file, likewise
MAX_DEPTH = 50


@dataclass(frozen=True)
class Refused:
    """A job document too large or too deep to build: mapped as a note, the other jobs go on."""
    reason: str


def read_jobs(path: Path) -> list[dict | Refused]:
    """The job documents of a urls.yaml, read safely (YAML's safe loader, bounded as above)."""
    try:
        with Path(path).open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MB: not a urls.yaml")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    loader = yaml.SafeLoader(text)
    docs, total = [], 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if len(docs) >= MAX_JOBS:
                raise ConfigError(f"{path}: more than {MAX_JOBS:,} jobs: not read")
            try:
                values = _expanded_size(node)
            except ValueError as exc:
                docs.append(Refused(str(exc)))
                continue
            total += values
            if total > MAX_VALUES:
                raise ConfigError(f"{path}: job #{len(docs) + 1}: the file's YAML (aliases expanded) holds more"
                                  f" than {MAX_VALUES:,} values: not read")
            doc = loader.construct_document(node)
            if doc is not None:
                docs.append(doc)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: job #{len(docs) + 1}: nested too deeply to be a urlwatch job") from None
    finally:
        loader.dispose()
    for index, doc in enumerate(docs, 1):
        if not isinstance(doc, (dict, Refused)):
            raise ConfigError(f"{path}: job #{index} is not a mapping of keys (urlwatch's urls.yaml has one per document)")
    return docs


def _expanded_size(root) -> int:
    """How many values a composed YAML document stands for once its aliases are expanded (a
    shared node counted as often as it is used), found without expanding them: linear in the
    nodes. ValueError when that passes MAX_JOB_VALUES or the document is nested more than
    MAX_DEPTH deep, aliases followed (a recursive alias is infinitely deep)."""
    too_deep = f"nested more than {MAX_DEPTH} levels deep"
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth below it)
    stack = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        if id(node) in done:
            continue
        if depth > MAX_DEPTH:
            raise ValueError(too_deep)
        if isinstance(node, yaml.ScalarNode):
            done[id(node)] = (1, 1)
            continue
        children = [child for pair in node.value for child in pair] if isinstance(node, yaml.MappingNode) \
            else list(node.value)
        if children_done:
            below = [done[id(child)] for child in children]
            values, height = 1 + sum(n for n, _ in below), 1 + max((h for _, h in below), default=0)
            if height > MAX_DEPTH:
                raise ValueError(too_deep)
            if values > MAX_JOB_VALUES:
                raise ValueError(f"its YAML (aliases expanded) holds more than {MAX_JOB_VALUES:,} values")
            done[id(node)] = (values, height)
            continue
        stack.append((node, depth, True))
        stack += [(child, depth + 1, False) for child in children if id(child) not in done]
    return done[id(root)][0]


def map_jobs(docs: list[dict], taken: dict[str, str] | None = None) -> list[Mapped]:
    """Map every job; names are made unique, also against `taken` (name -> url of the jobs
    already in our jobs file: a job of the same name and url is the same job)."""
    taken, suffixes, mine = dict(taken or {}), {}, {}
    mapped = []
    for index, doc in enumerate(docs, 1):
        job = map_job(doc, index)
        if job.table is not None:
            job.table = _literal(job.table)
            name = job.table["name"] = _unique(job.table["name"], job.table["url"], taken, suffixes)
            if name in mine:  # the same name and URL twice in urls.yaml: one job
                job.table, job.notes = None, [f"job #{index}: the same job as job #{mine[name]} ({name}): written once"]
                mapped.append(job)
                continue
            mine[name] = index
            job.notes = [f"{name}: {note}" for note in job.notes]
            password = _password(job.url)
            if password:  # never written into the file: a ${VAR} instead, as for any secret
                log.add_secret(password)
                slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()
                variable = f"{slug}_PASSWORD" if slug[:1].isalpha() else f"JOB_{slug}_PASSWORD"
                job.table["url"] = _with_password(job.table["url"], "${" + variable + "}")
                job.notes.append(f"{name}: the URL's password is written as ${{{variable}}}: set that variable")
            _secret_values(job, name)
            taken[name] = job.table["url"]
        mapped.append(job)
    return mapped


TEXT_KEYS = ("kind", "url", "user_visible_url", "name", "command", "navigate")  # read as text below


def map_job(doc: dict | Refused, index: int = 1) -> Mapped:
    if isinstance(doc, Refused):
        return Mapped("", None, [f"job #{index}: {doc.reason}: not read, not written, its history not imported"])
    label = f"job #{index}" + (f" ({_brief(doc['name'])})" if isinstance(doc.get("name"), str) else "")
    wrong = [key for key in TEXT_KEYS if doc.get(key) is not None and not isinstance(doc[key], str)]
    if wrong:
        return Mapped("", None, [f"{label}: {', '.join(wrong)}: not text ({_brief(doc[wrong[0]])}):"
                                 " not written, its history not imported"])
    kind = doc.get("kind") or ("url" if "url" in doc else "shell" if "command" in doc else
                               "browser" if "navigate" in doc else None)
    if kind != "url" or not isinstance(doc.get("url"), str):
        what = {"shell": "a shell command", "browser": "a browser job"}.get(kind, "not a URL job")
        return Mapped(str(doc.get("command") or doc.get("navigate") or doc.get("url") or ""), None,
                      [f"{label}: {what}: not written, its history not imported"])
    url = doc["url"]
    location = doc.get("user_visible_url") or url
    table = {"name": _name(doc.get("name"), url), "url": url}
    notes = []
    if not re.match(r"^https?://[^/\s]+", url):
        return Mapped(location, None, [f"{label}: {_scheme(url)} URL: only http(s) pages are checked here;"
                                       " not written, its history not imported"])
    notes += _map_filters(doc.get("filter"), table)
    if isinstance(doc.get("max_tries"), int) and not isinstance(doc["max_tries"], bool) \
            and 1 <= doc["max_tries"] <= 10000:
        table["alert_after"] = doc["max_tries"]
    elif "max_tries" in doc:
        notes.append("max_tries: not a whole number from 1 to 10000")
    timeout = doc.get("timeout")
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 0 < timeout <= 300:
        table["timeout"] = timeout
    elif timeout is not None:
        notes.append(f"timeout {timeout!r}: ours is from 0 to 300 seconds (default 30)")
    if doc.get("ignore_cached") is True:
        table["conditional"] = False
    notes += _map_request(doc, table)
    for key in doc:
        if key not in URL_KEYS_MAPPED and key != "user_visible_url":
            notes.append(f"{_brief(key) if not isinstance(key, str) or not key.isprintable() else key}: not mapped")
    if "user_visible_url" in doc:
        notes.append("user_visible_url: not mapped (its history is found by it)")
    return Mapped(location, table, notes, url)


def _map_request(doc: dict, table: dict) -> list[str]:
    """urlwatch's headers, cookies, method and data, as ours (shared/scrape/request.py). Their
    values are written as ${VAR}s by map_jobs, never as they are: they may be secrets."""
    notes = []
    method = doc.get("method")
    if isinstance(method, str) and method.upper() in request.METHODS:
        if method.upper() != "GET":
            table["method"] = method.upper()
    elif method is not None:
        notes.append(f"method: only {' and '.join(request.METHODS)} are sent here: not mapped")
    data = doc.get("data")
    if data is not None and table.get("method") is None and isinstance(data, (dict, str)):
        table["method"] = "POST"  # urlwatch posts when a job has data
    for key in ("headers", "cookies"):
        value = doc.get(key)
        if value is None:
            continue
        if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, (str, int, float)) and
                                           not isinstance(v, bool) for k, v in value.items()):
            table[key] = {k: str(v) for k, v in value.items()}
        else:
            notes.append(f"{key}: not a table of names and values: not mapped")
    if isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in data.items()):
        table["data"] = {k: str(v) for k, v in data.items()}
    elif isinstance(data, str):
        table["data"] = data
    elif data is not None:
        notes.append("data: not a table of values or a string: not mapped")
    try:
        request.check(_Shape(table))
    except ValueError as exc:
        for key in ("headers", "cookies", "method", "data"):
            table.pop(key, None)
        notes.append(f"{str(exc)}: headers, cookies, method and data not mapped")
    return notes


class _Shape:
    """A table's request keys, as request.check reads them from a job."""

    def __init__(self, table: dict):
        self.method = table.get("method", "GET")
        self.headers, self.cookies, self.data = table.get("headers"), table.get("cookies"), table.get("data")


def _secret_values(job: "Mapped", name: str) -> None:
    """Each header, cookie and data value becomes a ${VAR} to set, never written as it is."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()
    prefix = slug if slug[:1].isalpha() else f"JOB_{slug}"
    for key in ("headers", "cookies", "data"):
        value = job.table.get(key)
        if isinstance(value, str):
            log.add_secret(value)
            job.table[key] = "${" + f"{prefix}_DATA" + "}"
            job.notes.append(f"{name}: data is written as ${{{prefix}_DATA}}: set that variable to urlwatch's value")
        elif isinstance(value, dict):
            for field_name in list(value):
                log.add_secret(value[field_name])
                variable = f"{prefix}_{key.upper()}_{re.sub(r'[^A-Za-z0-9]+', '_', field_name).strip('_').upper()}"
                value[field_name] = "${" + variable + "}"
                job.notes.append(f"{name}: {key}.{field_name} is written as ${{{variable}}}: set that variable to"
                                 " urlwatch's value")


def _map_filters(spec, table: dict) -> list[str]:
    """Fill select/drop/ignore/text from urlwatch's filter chain; the notes for what did not map."""
    if spec is None:
        return []
    try:
        chain = list(_chain(spec))
    except ValueError as exc:
        return [f"filter: {exc}: not mapped"]
    notes, steps = [], []
    select, drop, ignore, as_text = [], [], [], False
    for kind, sub in chain:
        shown = (kind if kind.isprintable() else _brief(kind)) + (f" {_brief(sub)}" if sub else "")
        if kind == "css" and isinstance(sub, dict) and set(sub) <= {"selector", "exclude"} and sub.get("selector") \
                and all(isinstance(v, str) for v in sub.values()):
            if select:
                notes.append(f"filter {shown}: a second css filter (nested selection): not mapped")
                continue
            for key, into in (("selector", select), ("exclude", drop)):
                if key in sub:
                    try:
                        filters.check_selector(sub[key])
                    except ValueError as exc:
                        notes.append(f"filter {shown}: {exc}: not mapped")
                        break
                    into.append(sub[key])
            steps.append("html")
        elif kind == "html2text":
            as_text = True
            steps.append("text")
            if sub.get("method", "re") != "re" or set(sub) - {"method"}:
                notes.append(f"filter {shown}: mapped to text = true (our own HTML -> text; options not mapped)")
        elif kind == "re.sub" and isinstance(sub, dict) and isinstance(sub.get("pattern"), str) and sub["pattern"] \
                and not sub.get("repl"):
            try:
                filters.check_pattern(sub["pattern"])
            except ValueError as exc:
                notes.append(f"filter {shown}: {exc}: not mapped")
                continue
            ignore.append(sub["pattern"])
            steps.append("ignore")
        elif kind == "strip" and not sub:
            steps.append("strip")  # whitespace = "ignore" (the default once a filter is set) strips
        else:
            notes.append(f"filter {shown}: not mapped")
    order = [s for s in steps if s != "strip"]
    if order != sorted(order, key=["html", "text", "ignore"].index):
        notes.append("filter: urlwatch ran these in another order; here they run as drop, select,"
                     " HTML -> text, ignore, whitespace")
    if "ignore" in order and "text" in order and order.index("ignore") < order.index("text"):
        notes.append("filter re.sub: urlwatch applied it to the HTML; here `ignore` applies to the text")
    if select:
        table["select"] = select
    if drop:
        table["drop"] = drop
    if ignore:
        table["ignore"] = ignore
    if select or drop or ignore or as_text:
        table["text"] = as_text  # said either way: our default turns text on once a filter is set
    return notes


def _literal(value):
    """An adopted value as data: `${NAME}` in it is written `$${NAME}`, which our jobs file reads
    as the text `${NAME}`, so no environment variable (a secret) is ever expanded into it."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, list):
        return [_literal(item) for item in value]
    if isinstance(value, dict):
        return {key: _literal(item) for key, item in value.items()}
    return value


def _brief(value, depth: int = 3) -> str:
    """`value` as short JSON for a note: YAML's aliases can make a small file hold a structure of
    billions of items (and keys may hold line breaks), so only its beginning is shown."""
    def pruned(v, level):
        if isinstance(v, str):
            return v if len(v) <= 200 else v[:200] + "…"
        if isinstance(v, (bool, int, float)) or v is None:
            return v
        if level >= depth:
            return "…"
        if isinstance(v, dict):
            items = list(v.items())
            return {str(k)[:200]: pruned(x, level + 1) for k, x in items[:10]} | ({"…": len(items) - 10}
                                                                                   if len(items) > 10 else {})
        if isinstance(v, (list, tuple)):
            return [pruned(x, level + 1) for x in v[:10]] + ([f"… {len(v) - 10} more"] if len(v) > 10 else [])
        return str(v)[:200]

    return json.dumps(pruned(value, 0), ensure_ascii=False, default=str)


def _chain(spec):
    """urlwatch's filter spec as (kind, subfilter) pairs: a list of names or {name: subfilter},
    or the legacy string "css:#x,html2text". A subfilter given as a plain value is the filter's
    default one (css: selector, re.sub: pattern, html2text: method)."""
    if isinstance(spec, str):
        spec = [dict([item.split(":", 1)]) if ":" in item else item for item in spec.split(",")]
    if not isinstance(spec, list):
        raise ValueError("not a list of filters")
    defaults = {"css": "selector", "xpath": "path", "re.sub": "pattern", "re.findall": "pattern",
                "html2text": "method", "grep": "re", "grepi": "re"}
    for item in spec:
        if isinstance(item, str):
            yield item.strip(), {}
        elif isinstance(item, dict) and len(item) == 1:
            kind, sub = next(iter(item.items()))
            kind = str(kind).strip()
            if sub is None:
                yield kind, {}
            elif isinstance(sub, dict):
                yield kind, sub
            elif kind in defaults:
                yield kind, {defaults[kind]: sub}
            else:
                yield kind, {"": sub}
        else:
            raise ValueError(f"filter {item!r} is neither a name nor one name: settings")


def _name(name, url: str) -> str:
    """A job name of ours (letters, digits, _ . -, up to 100) from urlwatch's name, else the URL."""
    if isinstance(name, str):
        ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()  # Ä -> A
        safe = NAME_UNSAFE.sub("-", ascii_name).strip("-._")[:100].rstrip("-._")
        if safe:
            return safe
    from shared.scrape.run import adhoc_table  # how an ad-hoc --url is named

    return adhoc_table(url.split("#")[0], None)["name"]


def _unique(name: str, url: str, taken: dict[str, str], suffixes: dict[str, int]) -> str:
    """`name`, or `name-2`, ...: the first not taken by another URL (a password, or the ${VAR}
    written instead of it, does not make a URL another). `suffixes` remembers, per name, the
    suffix to try next, so ten thousand jobs of one name are named in linear time."""
    if name not in taken or _bare(taken[name]) == _bare(url):
        return name
    base = name[:94]
    for number in range(suffixes.get(base, 2), 1_000_000):
        candidate = f"{base}-{number}"
        if candidate not in taken or _bare(taken[candidate]) == _bare(url):
            suffixes[base] = number + 1
            return candidate
    raise ConfigError(f"no free job name like {name!r}")


def _bare(url) -> str:
    return _with_password(url, "") if isinstance(url, str) and _password(url) else str(url)


def _scheme(url: str) -> str:
    return (url.split(":", 1)[0] if ":" in url else "relative") + ":"


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


# --- the cache --------------------------------------------------------------------------

CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of ours another clock may be before we say so
# What is imported, bounded like a page (fetch.py's 5 MB cap) and in all: the newest snapshots
# are kept, older ones beyond the total are counted and left in the cache.
MAX_SNAPSHOT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_BYTES = 512 * 1024 * 1024


@dataclass
class Cache:
    """What urlwatch's cache holds for import: guid -> [(time, data)], oldest first."""
    history: dict[str, list[tuple[datetime, str]]]
    ahead: int = 0  # snapshots dated ahead of this clock (another clock's), taken as seen now
    too_big: int = 0  # snapshots over MAX_SNAPSHOT_BYTES, not imported
    beyond_total: int = 0  # older snapshots past MAX_IMPORT_BYTES in all, not imported

    def notes(self, path) -> list[str]:
        return [f"{path}: {plural(count, what[0], what[1])} {words}" for count, what, words in (
            (self.ahead, ("snapshot", "snapshots"), f"dated more than {CLOCK_SKEW.seconds // 60} minutes ahead of this machine's"
                         " clock (another clock?): taken as seen now"),
            (self.too_big, ("snapshot", "snapshots"), f"larger than {MAX_SNAPSHOT_BYTES // 2**20} MB, a page's cap here: not imported"),
            (self.beyond_total, ("older snapshot", "older snapshots"), f"beyond {MAX_IMPORT_BYTES // 2**20} MB imported in all: not imported"),
        ) if count]


def read_cache(path: Path) -> Cache:
    """Every snapshot of urlwatch's minidb cache (rows of failed checks, tries > 0, are not
    snapshots), bounded as above. Opened read-only: the file is never changed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (urlwatch's cache is ~/.cache/urlwatch/cache.db by default)")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigError(f"{path}: cannot open it as SQLite: {exc}") from None
    cache, total, now = Cache({}), 0, datetime.now(timezone.utc)
    try:
        for guid, timestamp, data, size in con.execute(CACHE_SNAPSHOTS, {"max": MAX_SNAPSHOT_BYTES}):
            try:
                when = datetime.fromtimestamp(float(timestamp), timezone.utc)
            except (TypeError, ValueError, OverflowError, OSError):  # not a time a datetime can hold: no snapshot
                continue
            if data is None:
                cache.too_big += 1
                continue
            if total + size > MAX_IMPORT_BYTES:
                cache.beyond_total += 1
                continue
            total += size
            if when > now + CLOCK_SKEW:  # another machine's clock: taken as seen now, so history stays sorted
                when, cache.ahead = now, cache.ahead + 1
            if isinstance(data, bytes):
                data = data.decode("utf-8", "replace")
            cache.history.setdefault(str(guid), []).append((when, str(data)))
    except sqlite3.Error as exc:
        raise ConfigError(f"{path}: not urlwatch's SQLite cache (a table CacheEntry with guid, timestamp, data,"
                          f" tries): {exc}") from None
    finally:
        con.close()
    for snapshots in cache.history.values():
        snapshots.reverse()  # read newest first (the newest are kept); imported oldest first
        snapshots.sort(key=lambda snapshot: snapshot[0])  # stable: clamped times stay in saved order
    return cache


# Snapshots: rows saved when a page was new, changed, or checked again after failures
# (tries 0, or NULL in old caches), newest first; one over the size cap comes without its data.
CACHE_SNAPSHOTS = """
SELECT guid, timestamp, CASE WHEN length(CAST(data AS BLOB)) > :max THEN NULL ELSE data END,
       length(CAST(data AS BLOB))
FROM CacheEntry
WHERE (tries = 0 OR tries IS NULL) AND data IS NOT NULL AND timestamp IS NOT NULL
ORDER BY timestamp DESC, id DESC
"""


# --- writing the jobs ---------------------------------------------------------------------

def toml(jobs: list[Mapped], comments: list[str]) -> str:
    """The [[scrape]] tables of the mapped jobs, with comments, checked to read back as written."""
    lines = [_comment(line) for line in comments]
    for job in jobs:
        if job.table is None:
            continue
        lines.append("")
        lines += [_comment(note) for note in job.notes]
        lines.append("[[scrape]]")
        lines += [f"{key} = {_value(value)}" for key, value in job.table.items()]
    text = "\n".join(lines) + "\n"
    written = tomllib.loads(text).get("scrape", [])
    if written != [job.table for job in jobs if job.table is not None]:
        raise RuntimeError("the jobs written do not read back as mapped")  # a bug in _value
    return text


def _comment(text: str) -> str:
    """A TOML comment line: a line break (or other control character) in a note must not end it."""
    return "# " + "".join(c if c.isprintable() else " " for c in str(text))


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table: headers, cookies, a form
        keys = (k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False) for k in value)
        return "{" + ", ".join(f"{k} = {_value(v)}" for k, v in zip(keys, value.values())) + "}"
    text = str(value)
    if "'" not in text and not any(ord(c) < 32 or ord(c) == 127 for c in text):
        return f"'{text}'"  # a literal string: regular expressions read as written
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


# --- the command ------------------------------------------------------------------------

def adopt(urls: str, cache: str | None = None, write: bool = False) -> str:
    """`--adopt-urlwatch URLS.yaml [CACHE.db] [--write]`: map the jobs and read the cache. Without
    `write` nothing changes anywhere: the jobs are printed as TOML, with what the cache would
    import. With `write` the cache's snapshots are imported (into $DATABASE_URL) and the jobs
    appended to the jobs file (printed instead, to add by hand, when the jobs come from
    $JOBS_TOML). Returns what to print. Jobs already in the jobs file (same name and url) are not
    written again, and targets with history are not imported into again: running it twice is
    harmless."""
    from shared.app import adopt as adoption
    from shared.app import config
    from shared.core import db

    docs = read_jobs(Path(urls))
    existing = {}
    if config.has_jobs_file():
        existing = {e.name: e.table.get("url") for e in config.entries() if e.kind == "scrape"}
    jobs = map_jobs(docs, existing)
    read = read_cache(Path(cache)) if cache else Cache({})
    history = read.history
    report = [f"from urlwatch: {urls}: {plural(len(docs), 'job')}, {sum(j.table is not None for j in jobs)} mapped"]
    report += read.notes(cache)
    if cache:
        known = {job.guid for job in jobs}
        unknown = [guid for guid in history if guid not in known]
        if write:
            with db.connection() as con:
                imported = adoption.import_snapshots(con, [(job.name, job.url, history.get(job.guid, []))
                                                           for job in jobs if job.table is not None])
            report += [line.line() for line in imported]
        else:
            found = [len(history.get(job.guid, [])) for job in jobs if job.table is not None]
            report.append(f"{cache}: {plural(sum(found), 'snapshot')} of {plural(sum(n > 0 for n in found), 'job')};"
                          " nothing imported yet: --write imports them into $DATABASE_URL")
        if unknown:
            report.append(f"{plural(len(unknown), 'history', 'histories')} in {cache} belong to no URL job of {urls}: not imported")
    new = [job for job in jobs if job.table is None or job.name not in existing]
    same = [job.name for job in jobs if job.table is not None and job.name in existing]
    if same:
        report.append(f"already in {config.jobs_source()}, not written again: {', '.join(same)}")
    notes = [note for job in jobs for note in job.notes]
    to_print = not write or (config.has_jobs_file() and config.jobs_source() == "$JOBS_TOML")
    if to_print:
        if write:
            report.append("the jobs come from $JOBS_TOML: add the jobs below to it")
        return toml(new, report + (["not mapped: see the notes above each job"] if notes else [])
                    + [job.notes[0] for job in jobs if job.table is None])
    text = toml(new, [f"adopted from urlwatch ({urls})"])
    written = [job for job in new if job.table is not None]
    if written:
        path = config.jobs_file_path()
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        tomllib.loads(before + "\n" + text)  # the file stays valid TOML (names were made unique)
        with path.open("a", encoding="utf-8") as out:
            out.write(("\n" if before and not before.endswith("\n") else "") + ("\n" if before else "") + text)
        report.append(f"wrote {len(written)} [[scrape]] jobs to {path}: {', '.join(j.name for j in written)}")
    else:
        report.append("no job to write")
    return "\n".join(report + [f"not mapped: {note}" for note in notes]) + "\n"
