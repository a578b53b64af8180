"""A filter worker for shared/scrape/sandbox.py: `python -B -m shared.scrape.filter_worker MEMORY_MB`.

Requests on stdin: REQUEST, settings as JSON, page as UTF-8 (lone surrogates passed through);
answers on stdout: ANSWER, payload as UTF-8. After start-up stdout and stderr go to /dev/null:
nothing but answers leaves it, nothing of a page reaches the run's logs. It exits when stdin
closes; each request arms an alarm (its seconds + GRACE) whose default action ends it even inside
a regular expression, in case the run died. MEMORY_MB > 0 caps its address space at its size
after start-up plus that much: a page needing more ends as NO_MEMORY, not in the run's memory.
"""

import json
import os
import signal
import struct
import sys

REQUEST = struct.Struct(">dII")  # seconds allowed, settings bytes, page bytes
ANSWER = struct.Struct(">BQ")  # kind, payload bytes
OK, FILTER_ERROR, UNEXPECTED, NO_MEMORY = range(4)  # answer kinds
GRACE = 2.0  # seconds past a request's own before the worker's alarm ends it


def _read_exact(stream, size: int) -> bytes | None:
    """`size` bytes, or None at end of input (the run closed the pipe or died)."""
    data = stream.read(size) if size else b""
    return data if len(data) == size else None


def _answer(settings: bytes, page: bytes) -> tuple[int, bytes]:
    from shared.scrape import filters

    try:
        chosen = json.loads(settings)
        text = page.decode("utf-8", "surrogatepass")
        if chosen.pop("pdf", False):  # the answer's bytes, as latin-1 text: the PDF's text first
            text = _pdf_text(text.encode("latin-1"))
        text = filters.apply_settings(chosen, text) if chosen else text
        return OK, text.encode("utf-8", "surrogatepass")
    except filters.FilterError as exc:
        return FILTER_ERROR, str(exc).encode("utf-8", "surrogatepass")
    except MemoryError:
        return NO_MEMORY, b""
    except Exception as exc:  # what the run would call "unexpected": reported, never logged here
        return UNEXPECTED, f"{type(exc).__name__}: {exc}".encode("utf-8", "surrogatepass")


def _pdf_text(data: bytes) -> str:
    """The text of a PDF, page by page (pypdf, pure Python: in this worker, within its time and
    memory limits). A PDF that cannot be read is the check's error, never a change."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    from shared.scrape import filters

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise filters.FilterError("the PDF is encrypted: its text cannot be read")
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip() + "\n"
    except PdfReadError as exc:
        raise filters.FilterError(f"the PDF cannot be read: {' '.join(str(exc).split())[:200]}") from None


def _cap_memory(extra_mb: int) -> None:
    """Cap the address space at its size now plus `extra_mb` (Linux; elsewhere no cap)."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            now = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = now + extra_mb * 1024 * 1024
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        pass


def main(argv: list[str]) -> int:
    memory_mb = int(argv[0]) if argv else 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle; it closes us
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the alarm ends the process (see docstring)
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a print while starting goes where start-up errors go, never into the answers
    from selectolax.lexbor import LexborHTMLParser

    from shared.scrape import filters  # noqa: F401  (loaded before the first page, not during)

    LexborHTMLParser("<p>warm</p>").css("p")
    # Start-up went well: from now on nothing but answers leaves this process.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    if memory_mb > 0:
        _cap_memory(memory_mb)
    while True:
        head = _read_exact(requests, REQUEST.size)
        if head is None:
            return 0
        seconds, settings_size, page_size = REQUEST.unpack(head)
        signal.setitimer(signal.ITIMER_REAL, min(max(seconds, 0.0), 1e6) + GRACE)
        try:
            settings = _read_exact(requests, settings_size)
            page = _read_exact(requests, page_size)
        except MemoryError:  # the page alone is over the cap: say so, then go (the rest is unread)
            settings = page = None
            kind, payload = NO_MEMORY, b""
        else:
            if settings is None or page is None:
                return 0
            kind, payload = _answer(settings, page)
        del settings, page
        answers.write(ANSWER.pack(kind, len(payload)))
        answers.write(payload)
        answers.flush()
        signal.setitimer(signal.ITIMER_REAL, 0)
        if kind == NO_MEMORY:
            return 3  # a fresh worker starts with a clean heap


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
