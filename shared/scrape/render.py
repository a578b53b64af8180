"""Pages that need JavaScript: `render = "browser"` on a scrape job stores the DOM after the page's
scripts ran, then the job's filters apply as usual. Two renderers behind `render()`:

- BROWSER_URL: a browserless-compatible service (`POST <url>/content` with `{"url": ...}` answers
  the rendered HTML; browserless and its self-hosted image serve it, and so does
  devtools/renderer.py): for Lambda and small dynos, where no browser fits.
- else a local Chromium (`chromium`, `chromium-browser` or `google-chrome` on PATH, or
  CHROMIUM_PATH): a laptop, a VPS, a Heroku dyno with the Chrome for Testing buildpack. Each page
  is one `--headless --dump-dom` process in its own process group and its own empty profile,
  killed at the job's timeout.

Bounds: the job's timeout covers the whole render; BROWSER_CONCURRENCY browsers at once (default
1: one Chromium takes 150-300 MB); the rendered HTML is capped like a fetched body. A rendered
page has no validators: conditional requests do not apply.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from shared.core import log, numbers
from shared.core.text import one_line

MAX_HTML_BYTES = 5 * 1024 * 1024  # as a fetched body (fetch.MAX_BODY_BYTES)
VIRTUAL_TIME_MS = 5000  # timers a page sets to write itself get this much virtual time
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-extensions", "--mute-audio", "--hide-scrollbars")

_slots_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None


class RenderError(Exception):
    """The page could not be rendered: that check's error, in one line."""


def concurrency() -> int:
    value = os.environ.get("BROWSER_CONCURRENCY", "1")
    try:
        return numbers.whole(value, "BROWSER_CONCURRENCY", 1, 16)
    except ValueError as exc:
        raise RenderError(str(exc)) from None


def _slot() -> threading.BoundedSemaphore:
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(concurrency())
        return _slots


def render(url: str, timeout: float, browser_url: str | None = None) -> str:
    """The page's DOM after its scripts ran, within `timeout` seconds (waiting for a free
    browser included)."""
    browser_url = browser_url if browser_url is not None else os.environ.get("BROWSER_URL") or None
    deadline = time.monotonic() + timeout
    if browser_url:
        return _remote(browser_url, url, deadline, timeout)
    slots = _slot()
    if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise RenderError(f"timed out: no browser free within {timeout:g} s (BROWSER_CONCURRENCY)")
    try:
        return local(url, deadline - time.monotonic())
    finally:
        slots.release()


def browser_path() -> str:
    found = os.environ.get("CHROMIUM_PATH") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        raise RenderError("no browser: install chromium (or set CHROMIUM_PATH), or set BROWSER_URL to a rendering"
                          " service")
    return found


def local(url: str, seconds: float) -> str:
    """One headless Chromium dumping the DOM of `url`, killed (with its children) at `seconds`."""
    if seconds <= 0:
        raise RenderError("timed out before the browser started")
    profile = tempfile.mkdtemp(prefix="render-")
    try:
        command = [browser_path(), *FLAGS, f"--user-data-dir={profile}",
                   f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--dump-dom", url]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(process.stdout.read(MAX_HTML_BYTES + 1)), daemon=True)
        reader.start()
        reader.join(seconds)
        if reader.is_alive() or process.poll() is None and not out:
            _kill(process)
            raise RenderError(f"timed out: the browser did not finish within {seconds:.3g} s")
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill(process)
        html = out[0] if out else b""
        if len(html) > MAX_HTML_BYTES:
            raise RenderError(f"rendered page is over the {MAX_HTML_BYTES} byte cap")
        if not html.strip():
            raise RenderError(f"the browser rendered nothing (exit {process.returncode})")
        return html.decode("utf-8", "replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # Chromium's renderer and GPU children too
    except ProcessLookupError:
        pass
    process.wait()


def _remote(service: str, url: str, deadline: float, timeout: float) -> str:
    """POST <service>/content {"url": url}: the rendered HTML, within the deadline."""
    import urllib3
    from urllib.parse import parse_qsl, urlsplit

    log.add_secret(service)  # browserless takes its token in the query: a secret
    for _, value in parse_qsl(urlsplit(service).query):
        log.add_secret(value)
    left = deadline - time.monotonic()
    if left <= 0:
        raise RenderError("timed out before the rendering service was asked")
    try:
        answer = urllib3.request("POST", service.rstrip("/") + "/content", body=json.dumps({"url": url}).encode(),
                                 headers={"Content-Type": "application/json"}, preload_content=False,
                                 timeout=urllib3.Timeout(connect=min(10.0, left), read=left), retries=False)
        data = answer.read(MAX_HTML_BYTES + 1, decode_content=True)
        answer.release_conn()
    except Exception as exc:  # noqa: BLE001 - any failure of the service is this check's
        raise RenderError(one_line(f"rendering service failed: {type(exc).__name__}: {exc}", 300)) from None
    if time.monotonic() > deadline:
        raise RenderError(f"timed out: no rendered page within {timeout:g} s")
    if answer.status != 200:
        raise RenderError(one_line(f"rendering service answered HTTP {answer.status}: {data[:200].decode('utf-8', 'replace')}", 300))
    if len(data) > MAX_HTML_BYTES:
        raise RenderError(f"rendered page is over the {MAX_HTML_BYTES} byte cap")
    return data.decode("utf-8", "replace")
