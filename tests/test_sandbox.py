"""The filter sandbox: filters run in worker processes that a job's timeout can stop (issue 10).

Real worker processes throughout. No assertion depends on this machine's speed: a hostile page
must end as an error well before the hang it replaces would (forever, or a minute), and a
healthy page must give exactly what filters.apply gives in this process.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.app import config
from shared.scrape import filters
from shared.scrape.job import ScrapeJob
from shared.scrape.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
CATASTROPHIC = {"ignore": r"(a+)+$"}  # 2^64 ways to fail on the page below: never ends in-process
CATASTROPHIC_PAGE = "a" * 64 + "b"
NESTED_PAGE = "<div>" * 10_000 + "deep" + "</div>" * 10_000  # select = "div": ~55 s in-process
PAGE = ("<html><head><title>T</title><script>var x = 1;</script></head><body><nav>Menu</nav>"
        "<main id=m><h1>Agenda  for Monday</h1><p>Item 1: <b>budget</b></p><p class=ad>Buy</p>"
        "<p>Generated in 12 ms</p></main><footer>Session 9f3a</footer></body></html>")


def job(**keys):
    return config.build(config.Entry("scrape", "j", {"name": "j", "url": "http://127.0.0.1/", **keys}, "test"))


def outcome(fn):
    """What a check would store: the body, or the error as the run words it."""
    try:
        return "body", fn()
    except filters.FilterError as exc:
        return "error", str(exc)
    except Exception as exc:  # noqa: BLE001  (run.py's wording for an unexpected error)
        return "error", f"unexpected {type(exc).__name__}: {exc}"


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_for(predicate, seconds: float = 30.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(2) as box:
        yield box


JOBS = [
    {"select": "main"},
    {"select": ["h1", "p"], "drop": ".ad"},
    {"drop": ["nav", "footer", ".ad"], "ignore": [r"Generated in \d+ ms"]},
    {"select": "main", "text": False},
    {"drop": "script", "text": False, "whitespace": "keep"},
    {"text": True, "whitespace": "keep"},
    {"ignore": "Session [0-9a-f]+"},
    {"select": "#nothing-here"},  # a FilterError: the same message either way
]


@pytest.mark.parametrize("keys", JOBS)
def test_healthy_page_gives_exactly_the_in_process_result(sandbox, keys):
    filtered = job(**keys)
    assert outcome(lambda: sandbox.apply(filtered, PAGE, 10)) == outcome(lambda: filters.apply(filtered, PAGE))


def test_text_travels_exactly(sandbox):
    """Carriage returns, NULs, astral characters and lone surrogates come back as in-process."""
    page = "<p>a\r\nb\x00c \U0001f600 \ud800 é</p>\r\n<p>\u2028x</p>"
    for keys in ({"select": "p"}, {"ignore": "b"}, {"drop": "x", "text": False}, {"select": "p", "whitespace": "keep"}):
        assert outcome(lambda: sandbox.apply(job(**keys), page, 10)) == outcome(lambda: filters.apply(job(**keys), page))


def test_a_job_without_filters_never_starts_a_worker():
    with Sandbox(2) as box:
        assert box.apply(job(), PAGE, 10) is PAGE
        assert box.apply(job(whitespace="keep"), PAGE, 10) is PAGE
        assert box.pids() == []


def test_catastrophic_regex_ends_as_an_error_within_the_timeout(sandbox):
    started = time.monotonic()
    with pytest.raises(filters.FilterError, match=r"^filters took longer than 2 s"):
        sandbox.apply(job(**CATASTROPHIC), CATASTROPHIC_PAGE, 2)
    assert time.monotonic() - started < 30  # in-process: 2^64 steps, never
    assert sandbox.apply(job(select="h1"), PAGE, 10) == "Agenda for Monday"  # and the run goes on


def test_deeply_nested_page_ends_as_an_error_within_the_timeout(sandbox):
    started = time.monotonic()
    with pytest.raises(filters.FilterError, match=r"^filters took longer than 3 s"):
        sandbox.apply(job(select="div"), NESTED_PAGE, 3)
    assert time.monotonic() - started < 30  # in-process: about 55 s
    assert sandbox.apply(job(select="b"), PAGE, 10) == "budget"


def test_a_worker_killed_midway_is_replaced():
    with Sandbox(1) as box:
        assert box.apply(job(select="b"), PAGE, 10) == "budget"
        [first] = box.pids()
        failure = []
        caller = threading.Thread(target=lambda: failure.append(outcome(
            lambda: box.apply(job(**CATASTROPHIC), CATASTROPHIC_PAGE, 120))))
        started = time.monotonic()
        caller.start()
        time.sleep(0.3)  # the worker is now in the regular expression (or about to be)
        os.kill(first, signal.SIGKILL)
        caller.join(60)
        assert failure and failure[0][0] == "error" and "SIGKILL" in failure[0][1], failure
        assert time.monotonic() - started < 60  # not the 120 s timeout: the death is seen at once
        assert box.apply(job(select="b"), PAGE, 10) == "budget"
        assert box.pids() and first not in box.pids()


def test_an_idle_worker_that_died_is_replaced_without_failing_a_page():
    with Sandbox(1) as box:
        assert box.apply(job(select="b"), PAGE, 10) == "budget"
        [first] = box.pids()
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: gone(first))
        assert box.apply(job(select="h1"), PAGE, 10) == "Agenda for Monday"


def test_a_page_over_the_memory_cap_fails_alone():
    with Sandbox(1, memory_mb=16) as box:
        with pytest.raises(filters.FilterError, match="ran out of memory"):
            box.apply(job(ignore="y", text=False), "x" * (64 * 1024 * 1024), 60)
        assert box.apply(job(select="b"), PAGE, 10) == "budget"


def test_many_threads_get_their_own_results():
    pages = [PAGE.replace("budget", f"budget {i}").replace("Monday", f"day {i % 7}") for i in range(400)]
    jobs = [job(**JOBS[i % 3]) for i in range(400)]
    expected = [filters.apply(j, p) for j, p in zip(jobs, pages)]
    seen = set()
    with Sandbox(2) as box:
        def one(i):
            seen.update(box.pids())
            return box.apply(jobs[i], pages[i], 60)

        with ThreadPoolExecutor(48) as pool:
            assert list(pool.map(one, range(400))) == expected
        assert 1 <= len(box.pids()) <= 2


def test_a_hostile_page_does_not_make_healthy_pages_wait_out_their_timeouts():
    """Two pages stuck until a 60 s timeout hold both workers of a pool of 2; the healthy pages
    behind them, with 20 s each, are filtered all the same (by workers started beside them)."""
    with Sandbox(2) as box:
        with ThreadPoolExecutor(10) as pool:
            stuck = [pool.submit(box.apply, job(**CATASTROPHIC), CATASTROPHIC_PAGE, 60) for _ in range(2)]
            time.sleep(0.5)
            started = time.monotonic()
            healthy = [pool.submit(box.apply, job(select="b"), PAGE, 20) for _ in range(8)]
            assert [future.result() for future in healthy] == ["budget"] * 8
            assert time.monotonic() - started < 20
            assert len(box.pids()) <= 4  # never more than 2 × size processes
            box.close()  # the stuck ones end now, with the run
            for future in stuck:
                with pytest.raises(filters.FilterError, match="the run is ending"):
                    future.result()


def test_waiting_for_a_worker_counts_against_the_timeout():
    with Sandbox(1, max_workers=1) as box:
        with ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(box.apply, job(**CATASTROPHIC), CATASTROPHIC_PAGE, 30)
            time.sleep(0.5)
            started = time.monotonic()
            with pytest.raises(filters.FilterError, match=r"^filters took longer than 1 s: no filter worker"):
                box.apply(job(select="b"), PAGE, 1)
            assert time.monotonic() - started < 20
            box.close()
            with pytest.raises(filters.FilterError):
                stuck.result()


def test_close_ends_every_worker():
    with Sandbox(2) as box:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: box.apply(job(select="b"), PAGE, 10), range(20)))
        pids = box.pids()
        assert pids
    assert all(gone(pid) for pid in pids)
    assert box.pids() == []
    with pytest.raises(filters.FilterError, match="run is ending"):
        box.apply(job(select="b"), PAGE, 10)


def test_workers_hold_no_secret_from_the_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:hunter2@db.example.org/x")
    monkeypatch.setenv("SOME_API_KEY", "sk-123")
    with Sandbox(1) as box:
        box.apply(job(select="b"), PAGE, 10)
        [pid] = box.pids()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0] for entry in environ if entry}
    assert b"PYTHONPATH" in names
    assert not names & {b"DATABASE_URL", b"SOME_API_KEY"}


PARENT = """
import os, sys, threading, time
sys.path.insert(0, {root!r})  # as Lambda's bootstrap puts /var/task on sys.path: no PYTHONPATH
from shared.app import config
from shared.scrape.sandbox import Sandbox

def job(**keys):
    return config.build(config.Entry("scrape", "j", {{"name": "j", "url": "http://127.0.0.1/", **keys}}, "test"))

box = Sandbox(2)
threading.Thread(target=box.apply, args=(job(ignore=r"(a+)+$"), "a" * 64 + "b", {busy_seconds}), daemon=True).start()
while not box.pids():
    time.sleep(0.01)
time.sleep(0.3)  # one worker in the regular expression; the next call starts another
print(box.apply(job(select="b"), "<p><b>kept</b> not</p>", 30), flush=True)
print(*box.pids(), flush=True)
os.kill(os.getpid(), 9)  # the run dies without closing anything
"""


def test_workers_run_from_any_directory_and_never_outlive_a_dead_run(tmp_path):
    """An isolated interpreter (no PYTHONPATH, like Lambda's) in an unrelated working directory
    starts workers, then dies by SIGKILL: the idle worker exits as its stdin closes, the busy one
    at its request's alarm, long before the catastrophic pattern would end."""
    busy_seconds = 3
    code = textwrap.dedent(PARENT.format(root=str(ROOT), busy_seconds=busy_seconds))
    done = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ.get("PATH", "")})
    lines = done.stdout.splitlines()
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert lines[0] == "kept"
    pids = [int(pid) for pid in lines[1].split()]
    assert len(pids) == 2
    assert wait_for(lambda: all(gone(pid) for pid in pids), seconds=busy_seconds + 30)


@pytest.mark.parametrize("pattern, reason", [
    ("a" * 20_000, "is too large to compile: patterns are limited to 10,000 characters"),
    ("(" * 2000 + ")" * 2000, "is too large to compile (nested too deeply)"),
    ("(?:" * 1000 + "a" + ")" * 1000, "is too large to compile (nested too deeply)"),
    ("a{4294967296}", "is too large to compile (the repetition number is too large)"),
])
def test_a_pattern_too_large_to_compile_is_a_value_error_naming_ignore(pattern, reason):
    with pytest.raises(ValueError) as caught:
        ScrapeJob(name="j", url="http://127.0.0.1/", ignore=(pattern,))
    message = str(caught.value)
    assert message.startswith("key 'ignore': ") and reason in message
    assert len(message) < 300  # one line, not the pattern


def test_a_pattern_too_large_to_compile_is_a_one_line_config_error(tmp_path):
    path = tmp_path / "jobs.toml"
    path.write_text(f"[[scrape]]\nname = \"j\"\nurl = \"http://127.0.0.1/\"\nignore = '{'(' * 5000}{')' * 5000}'\n")
    with pytest.raises(config.ConfigError) as caught:
        [config.build(entry) for entry in config.entries(path)]
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "job 'j'" in message and "key 'ignore'" in message
    assert "\n" not in message and len(message) < 400


# Property: for any HTML-ish text and any filter settings, the sandbox stores what in-process
# filtering would store (the same body, or the same error).

TOKENS = st.sampled_from([
    "<div>", "</div>", "<p>", "</p>", "<p class=a>", "<b>", "</b>", "<br>", "<span id=x>", "</span>",
    "<script>", "</script>", "<style>", "</style>", "<head>", "<title>", "</title>", "<!-- c -->",
    "<table><tr><td>", "</td></tr></table>", "<li>", "&amp;", "&lt;", "&nbsp;", "\n", "\r\n", "  ", "\t",
    "<", ">", "&", '"', "'", "<img src=x>", "<!doctype html>", "<template>", "</template>",
])
HTML_ISH = st.lists(st.one_of(TOKENS, st.text(max_size=12)), max_size=40).map("".join)
SELECTORS = st.lists(st.sampled_from(["div", "p", ".a", "b", "#x", "span", "td", "li, b", "div > p", "title"]),
                     max_size=2)
PATTERNS = st.lists(st.sampled_from([r"\d+", "a+", r"^\s*x", "[éß]+", "b$", r"\s+", "(?i)DIV"]), max_size=2)
FILTER_KEYS = st.fixed_dictionaries({}, optional={
    "select": SELECTORS, "drop": SELECTORS, "ignore": PATTERNS, "text": st.booleans(),
    "whitespace": st.sampled_from(["ignore", "keep"]),
})


@settings(max_examples=300, deadline=None)
@given(page=HTML_ISH, keys=FILTER_KEYS)
def test_property_sandboxed_filtering_equals_in_process(sandbox, page, keys):
    filtered = job(**keys)
    assert outcome(lambda: sandbox.apply(filtered, page, 30)) == outcome(lambda: filters.apply(filtered, page))


def test_a_small_lambda_keeps_one_worker(monkeypatch):
    from shared.scrape import sandbox

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
    assert sandbox.default_size() == 1
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
    assert 2 <= sandbox.default_size() <= 4
