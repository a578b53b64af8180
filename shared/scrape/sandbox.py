"""Noise filters where they can be stopped: a few worker processes per run (issue 10).

A thread cannot be stopped, and `(a+)+$` on "aaaa...b" or 10,000 nested elements each selected
run for minutes or forever in C code. So a run filters in worker processes (filter_worker.py) and
kills one that overstays: the job's timeout bounds its filters, the page ends as its error.

    with Sandbox() as sandbox:   # per run; starts nothing until a filtered page comes
        body = sandbox.apply(job, page.text, seconds_left)   # or FilterError

- A job without filters gets its page back at once, in this process.
- Thread-safe: `size` pages are filtered at once, other calls wait; waiting counts against
  `seconds`. Too late: FilterError "filters took longer than N s ...", the worker is killed and
  replaced on a later call. A worker that dies (crash, memory cap, kill) fails that page alone.
- A call busy for STALL_SECONDS no longer counts against `size` (at most max_workers, 2 x size,
  processes), so hostile pages held until their timeouts do not make healthy ones wait out theirs.
- Plain `python -m` children on pipes, not multiprocessing (its Pool and Queue need POSIX
  semaphores, which Lambda lacks). Their environment has no secrets (ENV_KEEP); PYTHONPATH comes
  from our sys.path, so they start from any directory and in Lambda's /var/task.
- They never outlive the run: close() kills them (so does garbage collection); if the run dies,
  an idle worker exits as its stdin closes, a busy one at its request's alarm.

Size: the CPUs we may use, from 2 to 4. A 2 kB page takes well under a millisecond, so two keep
up with 48 fetch threads (bench/RESULTS.md); each is ~20 MB, and a 512 MB Lambda reports 2 CPUs
but gets a fraction of one. Two, not one, so one slow page does not stall the rest.
"""

import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

from shared.core import numbers
from shared.scrape import filters
from shared.scrape.filter_worker import ANSWER, FILTER_ERROR, NO_MEMORY, OK, REQUEST, UNEXPECTED

logger = logging.getLogger(__name__)

WORKER_MODULE = "shared.scrape.filter_worker"
STALL_SECONDS = 2.0  # a call busy this long no longer counts against the pool's size
MEMORY_MB = 384  # address space a worker may add to what it holds at start (a 5 MB page takes ~160)
# What a worker's environment keeps: what Python and the C library need, nothing secret.
ENV_KEEP = ("PATH", "LD_LIBRARY_PATH", "PYTHONHOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
            "HOME", "SYSTEMROOT")
CODE_ROOT = str(Path(__file__).resolve().parent.parent.parent)  # the folder holding `shared`
CHUNK = 1 << 20  # bytes per pipe read


SMALL_LAMBDA_MB = 1024  # below this a Lambda has a fraction of a CPU and little memory to spare


def default_size() -> int:
    """Workers kept: one per usable CPU, 2 to 4; one in a small Lambda, whose whole sandbox
    (the run and its workers) shares one memory limit and less than one CPU."""
    lambda_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if numbers.is_whole(lambda_mb) and int(lambda_mb) < SMALL_LAMBDA_MB:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(2, min(4, cpus))


class _Timeout(Exception):
    pass


class _Died(Exception):
    pass


class _Worker:
    """One worker process. Only the thread that holds it (or close(), for an idle one) talks to it."""

    def __init__(self, memory_mb: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-B", "-m", WORKER_MODULE, str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_worker_env(), cwd=CODE_ROOT, close_fds=True)
        self.pid = self.proc.pid
        logger.debug("started filter worker %d", self.pid)
        self.fd_in = self.proc.stdin.fileno()
        self.fd_out = self.proc.stdout.fileno()
        os.set_blocking(self.fd_in, False)
        os.set_blocking(self.proc.stderr.fileno(), False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, request: bytes, deadline: float) -> tuple[int, bytes]:
        """Send one request, wait for its answer until `deadline` (time.monotonic())."""
        view = memoryview(request)
        sent = 0
        while sent < len(view):
            self._wait(self.fd_in, select.POLLOUT, deadline)
            try:
                sent += os.write(self.fd_in, view[sent:])
            except BlockingIOError:
                continue
            except OSError:  # EPIPE: the worker stopped reading; it may have answered (NO_MEMORY)
                break
        kind, size = ANSWER.unpack(self._read(ANSWER.size, deadline))
        return kind, self._read(size, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < size:
            self._wait(self.fd_out, select.POLLIN, deadline)
            chunk = os.read(self.fd_out, min(size - len(data), CHUNK))
            if not chunk:
                raise _Died
            data += chunk
        return bytes(data)

    @staticmethod
    def _wait(fd: int, event: int, deadline: float) -> None:
        poller = select.poll()
        poller.register(fd, event)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout
            if poller.poll(math.ceil(left * 1000)):
                return  # ready, or hung up / in error: the read or write that follows tells

    def kill(self) -> None:
        """Signal only: safe from any thread, while another one uses the pipes."""
        try:
            self.proc.kill()
        except OSError:
            pass

    def dispose(self) -> str:
        """Kill, reap and close the pipes (only by the thread holding the worker); how it ended."""
        self.kill()
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        said = b""
        try:
            said = self.proc.stderr.read(4096) or b""
        except OSError:
            pass
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        return _death(code, said)


def _death(code: int | None, said: bytes) -> str:
    """A worker's end, in words: its exit status and the last line it wrote (start-up errors)."""
    if code is None:
        how = "did not exit"
    elif code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
        if code == -signal.SIGKILL:
            how += " (out of memory, or killed from outside)"
    else:
        how = f"exited with code {code}"
    lines = [line for line in said.decode("utf-8", "replace").splitlines() if line.strip()]
    return f"filter worker {how}" + (f": {lines[-1].strip()[:200]}" if lines else "")


def _worker_env() -> dict:
    env = {key: os.environ[key] for key in ENV_KEEP if key in os.environ}
    paths = [entry or os.getcwd() for entry in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([CODE_ROOT, *paths]))
    return env


def _kill_all(workers: set) -> None:
    for worker in list(workers):
        worker.kill()


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


class Sandbox:
    """Worker processes for one run's filters; see the module docstring."""

    def __init__(self, size: int | None = None, *, max_workers: int | None = None, memory_mb: int = MEMORY_MB):
        self.size = default_size() if size is None else size
        self.max_workers = 2 * self.size if max_workers is None else max_workers
        if not 1 <= self.size <= self.max_workers:
            raise ValueError(f"size {self.size} must be from 1 to max_workers {self.max_workers}")
        self.memory_mb = memory_mb
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []  # started, waiting for a page
        self._busy: dict[object, float] = {}  # one token per call holding a slot -> its start
        self._live: set[_Worker] = set()  # every worker process not yet disposed of
        self._closed = False
        self._finalizer = weakref.finalize(self, _kill_all, self._live)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pids(self) -> list[int]:
        """The worker processes alive now (for tests and diagnostics)."""
        with self._cond:
            return sorted(worker.pid for worker in self._live)

    def apply(self, job, page: str, seconds: float, pdf: bytes | None = None) -> str:
        """filters.apply(job, page), in a worker, within `seconds`; raises FilterError. With
        `pdf` (an answer's bytes), the PDF's text, extracted in the worker, is the page."""
        chosen = filters.settings(job)
        if pdf is not None:
            return self.apply_settings({**chosen, "pdf": True}, pdf.decode("latin-1"), seconds)
        if not chosen:
            return page  # stored as fetched: nothing to run, nothing to stop
        return self.apply_settings(chosen, page, seconds)

    def apply_settings(self, chosen: dict, page: str, seconds: float) -> str:
        """filters.apply_settings(chosen, page), in a worker, within `seconds`."""
        if not math.isfinite(seconds):
            raise ValueError(f"seconds must be a finite number, not {seconds!r}")
        if seconds <= 0:
            raise filters.FilterError("filters were not run: the job's timeout was used up by the fetch")
        deadline = time.monotonic() + seconds
        settings = json.dumps(chosen).encode()
        body = page.encode("utf-8", "surrogatepass")
        request = REQUEST.pack(seconds, len(settings), len(body)) + settings + body
        del body
        token = self._acquire(deadline)
        if token is None:
            raise filters.FilterError(f"filters took longer than {_seconds(seconds)} s: no filter worker was "
                                      "free in time (other pages held them)")
        worker = None
        try:
            worker = self._take()
            try:
                kind, payload = worker.call(request, deadline)
            except _Timeout:
                self._discard(worker)
                worker = None
                raise filters.FilterError(f"filters took longer than {_seconds(seconds)} s and were stopped") from None
            except _Died:
                how = self._discard(worker)
                worker = None
                if self._closed:
                    raise filters.FilterError("filters were stopped: the run is ending") from None
                raise filters.FilterError(f"filters failed: {how}") from None
            if kind == NO_MEMORY:
                self._discard(worker)
                worker = None
                raise filters.FilterError(f"filters ran out of memory (a filter worker may use {self.memory_mb} MB)")
        finally:
            self._release(token, worker)
        text = payload.decode("utf-8", "surrogatepass")
        if kind == OK:
            return text
        if kind == FILTER_ERROR:
            raise filters.FilterError(text)
        if kind == UNEXPECTED:  # worded as the run words an unexpected error of its own
            raise filters.FilterError(f"unexpected {text}")
        raise filters.FilterError(f"filter worker answered with unknown kind {kind}")

    def close(self) -> None:
        """Kill every worker; calls still running end with FilterError. Idempotent."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = [worker for worker in self._live if worker not in idle]
            self._cond.notify_all()
        for worker in busy:
            worker.kill()  # its caller sees the pipe close and disposes of it
        for worker in idle:
            self._discard(worker)

    # The pool. A call holds a slot (a token in _busy) from _acquire to _release; workers are
    # started outside the lock, so a start never holds up other calls.

    def _acquire(self, deadline: float) -> object | None:
        with self._cond:
            while True:
                if self._closed:
                    raise filters.FilterError("filters were not run: the run is ending")
                now = time.monotonic()
                fresh = [started for started in self._busy.values() if now - started < STALL_SECONDS]
                if len(fresh) < self.size and len(self._busy) < self.max_workers:
                    token = object()
                    self._busy[token] = now
                    return token
                wait = deadline - now
                if wait <= 0:
                    self._cond.notify()  # a release may have woken this call: pass it on
                    return None
                if len(self._busy) < self.max_workers:  # a busy call turns stale: room then
                    wait = min(wait, min(fresh) + STALL_SECONDS - now)
                self._cond.wait(max(wait, 0.001))

    def _take(self) -> _Worker:
        """An idle worker that is still alive, or a new one."""
        while True:
            with self._cond:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                break
            if worker.alive():
                return worker
            self._discard(worker)  # died while idle (killed from outside): not this page's fault
        try:
            worker = _Worker(self.memory_mb)
        except OSError as exc:  # out of processes or memory: this page fails, a later one may start one
            raise filters.FilterError(f"could not start a filter worker: {exc}") from None
        with self._cond:
            self._live.add(worker)
            closed = self._closed
        if closed:
            worker.kill()
        return worker

    def _release(self, token: object, worker: _Worker | None) -> None:
        surplus = None
        with self._cond:
            del self._busy[token]
            if worker is not None:
                if self._closed or len(self._idle) >= self.size:
                    surplus = worker  # after a burst past `size`, back to `size` processes
                else:
                    self._idle.append(worker)
            self._cond.notify()  # one slot is free: one waiting call (the longest waiting) takes it
        if surplus is not None:
            self._discard(surplus)

    def _discard(self, worker: _Worker) -> str:
        how = worker.dispose()
        with self._cond:
            self._live.discard(worker)
        return how
