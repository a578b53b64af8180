"""Filter sandbox: what filtering in worker processes costs against filtering in this process.

    python -m bench.filter_sandbox [--pages 500] [--threads 48] [--size N] [--repeat 5] [--cold 10]

Pages are the scrape benchmark's (~2 kB, bench/scrape_site.page_body), filtered with
select = "body" and drop = "h1" (text on, whitespace ignored). Cases, each repeated and given
as the median (and range) of the repeats:

- one thread: every page in turn, in this process (filters.apply_settings) and through a warm
  Sandbox (its workers started before timing); the difference per page is the overhead;
- `--threads` threads (the run's fetch threads) sharing the pages, both ways;
- cold start: a fresh Sandbox's first call (a worker process started, its imports, one page),
  against a warm call; and the worker's resident memory;
- the hostile cases of issue 10, through the sandbox: `(a+)+$` on "a" * 64 + "b" with 2 s, and
  10,000 nested <div> with select = "div" and 5 s: how long until the FilterError.

Every sandboxed result is compared with the in-process one; a difference fails the benchmark.
Prints Markdown for bench/RESULTS.md.
"""

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench.scrape_site import page_body
from shared.scrape import filters
from shared.scrape.sandbox import Sandbox, default_size

SETTINGS = {"select": ["body"], "drop": ["h1"], "text": True, "whitespace": "ignore"}


def pages(count: int) -> list[str]:
    return [page_body(f"127.0.0.{2 + i % 50}", i // 50).decode() for i in range(count)]


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def timed_cpu(fn) -> tuple[float, float, object]:
    """Wall time, and CPU time of this process (the run's: its fetch threads share it)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def run_all(apply, texts: list[str], threads: int) -> list[str]:
    if threads == 1:
        return [apply(text) for text in texts]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(apply, texts))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def summary(values: list[float], scale: float = 1.0, unit: str = "ms", digits: int = 3) -> str:
    values = [v * scale for v in values]
    return f"{statistics.median(values):.{digits}f} {unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--threads", type=int, default=48)
    parser.add_argument("--size", type=int, default=None, help="sandbox workers (default: default_size())")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cold", type=int, default=10, help="fresh sandboxes for the cold-start figure")
    args = parser.parse_args(argv)
    size = args.size or default_size()
    texts = pages(args.pages)
    expected = [filters.apply_settings(SETTINGS, text) for text in texts]
    rows = []
    with Sandbox(size) as sandbox:
        # Warm: start every worker before timing.
        with ThreadPoolExecutor(size) as pool:
            list(pool.map(lambda text: sandbox.apply_settings(SETTINGS, text, 30), texts[:size * 4]))
        for threads in sorted({1, args.threads}):
            local, boxed, local_cpu, boxed_cpu = [], [], [], []
            for _ in range(args.repeat):  # the two take turns, so a slow moment hits both
                seconds, cpu, out = timed_cpu(
                    lambda: run_all(lambda t: filters.apply_settings(SETTINGS, t), texts, threads))
                assert out == expected
                local.append(seconds)
                local_cpu.append(cpu / args.pages)
                seconds, cpu, out = timed_cpu(
                    lambda: run_all(lambda t: sandbox.apply_settings(SETTINGS, t, 30), texts, threads))
                if out != expected:
                    print("sandboxed results differ from in-process ones", file=sys.stderr)
                    return 1
                boxed.append(seconds)
                boxed_cpu.append(cpu / args.pages)
            overhead = [(b - a) / args.pages for a, b in zip(local, boxed)]
            rows.append((threads, local, boxed, overhead, local_cpu, boxed_cpu))
        worker_rss = [rss_mb(pid) for pid in sandbox.pids()]

    cold, warm = [], []
    for _ in range(args.cold):
        with Sandbox(1) as fresh:
            seconds, out = timed(lambda: fresh.apply_settings(SETTINGS, texts[0], 30))
            assert out == expected[0]
            cold.append(seconds)
            warm.append(timed(lambda: fresh.apply_settings(SETTINGS, texts[0], 30))[0])

    hostile = []
    with Sandbox(size) as sandbox:
        for label, chosen, page, limit in [
            ("`ignore = '(a+)+$'` on 'a' × 64 + 'b'", {"ignore": ["(a+)+$"], "text": True, "whitespace": "ignore"},
             "a" * 64 + "b", 2.0),
            ("10,000 nested `<div>`, `select = 'div'`", {"select": ["div"], "text": True, "whitespace": "ignore"},
             "<div>" * 10_000 + "deep" + "</div>" * 10_000, 5.0),
        ]:
            start = time.perf_counter()
            try:
                sandbox.apply_settings(chosen, page, limit)
                outcome = "no error (!)"
            except filters.FilterError as exc:
                outcome = str(exc)
            hostile.append((label, limit, time.perf_counter() - start, outcome))
        healthy = sandbox.apply_settings(SETTINGS, texts[0], 5) == expected[0]

    print(f"{args.pages} pages of ~2 kB, select + drop + text, sandbox of {size} workers, "
          f"{os.cpu_count()} CPUs, {args.repeat} repeats (median, range)\n")
    print("| threads | in-process, all pages | sandbox, all pages | wall overhead per page "
          "| run-process CPU per page, in-process / sandbox |")
    print("|---|---|---|---|---|")
    for threads, local, boxed, overhead, local_cpu, boxed_cpu in rows:
        print(f"| {threads} | {summary(local, 1000, 'ms', 1)} | {summary(boxed, 1000, 'ms', 1)} "
              f"| {summary(overhead, 1000, 'ms', 3)} | {statistics.median(local_cpu) * 1000:.3f} ms / "
              f"{statistics.median(boxed_cpu) * 1000:.3f} ms |")
    print(f"\nCold start (first call of a fresh Sandbox: worker started, imports, one page), {args.cold} runs: "
          f"{summary(cold, 1000, 'ms', 1)}; the next call: {summary(warm, 1000, 'ms', 2)}")
    print(f"Worker resident memory after the run: {', '.join(f'{mb:.1f} MB' for mb in worker_rss)}\n")
    print("| hostile page | timeout | FilterError after | message |")
    print("|---|---|---|---|")
    for label, limit, seconds, outcome in hostile:
        print(f"| {label} | {limit:g} s | {seconds:.2f} s | {outcome} |")
    print(f"\nA healthy page right after, same sandbox: {'same result as in-process' if healthy else 'DIFFERENT'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
