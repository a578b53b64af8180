"""Scrape speed: many targets per run, ours against urlwatch 2.29, on the same loopback pages.

    make bench-scrape     (or: python -m bench.scrape_speed [--pages 500] [--large-pages 5000]
                                [--skip-urlwatch] [--skip-large] [--order grouped|interleaved])

Starts its own site (bench/scrape_site.py: 50 host addresses 127.0.0.2 ... 127.0.0.51, ~2 kB
pages, 50 ms per answer) and uses $DATABASE_URL, else a throwaway local PostgreSQL. Each case
gets a fresh database, so a first run is a real first run. Then, in one run:

- ours (`python -m functions.scrape`, a child process): first and second (unchanged) run, with
  conditional requests on (the default) and off, then the large case for us alone;
- urlwatch 2.29 (its own venv, bench/.venv-urlwatch, made on first use): first and second run.

Our code runs as deployed, its bytecode compiled first (bin/post_compile, Heroku's build step).
Wall time is measured around each child, peak RSS from os.wait4 on that child alone. The site
counts requests, 200s, 304s and body bytes per run. Each run's exit code and outcome counts are
checked, so a broken run cannot pass as a fast one. Prints a Markdown table and the issue's
targets, met or not; exits 0 either way (it is a report, not a gate). $SCRAPE_CONCURRENCY is
passed through to our runs if set.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from devtools import localpg
from shared.core import db

ROOT = Path(__file__).resolve().parent.parent
URLWATCH_VENV = ROOT / "bench" / ".venv-urlwatch"
URLWATCH_VERSION = "2.29"
HOSTS = 50
LATENCY = 0.05  # seconds per answer, as in the issue and peers.md
RUN_TIMEOUT = 900  # seconds before a hung child is killed (the table then shows the failure)
# Proxies would route loopback requests away from our site; neither tool should see them.
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@dataclass
class Run:
    tool: str
    case: str
    pages: int
    expected: str  # the outcome every target should have: new | unchanged
    wall: float = 0.0
    rss_mb: float = 0.0
    exit_code: int | None = None
    outcomes: dict = field(default_factory=dict)
    site: dict = field(default_factory=dict)  # the site's counters for this run
    output_tail: str = ""
    walls: list = field(default_factory=list)  # every repetition's wall time, when repeated
    all_ok: bool = True  # every repetition passed its check

    @property
    def ok(self) -> bool:
        return self.all_ok and self.exit_code == 0 and self.outcomes.get(self.expected, 0) == self.pages


def median_runs(repetitions: list[list[Run]]) -> list[Run]:
    """Repetitions of the same cases -> per case, the run with the median wall time, carrying
    every repetition's time (a shared 2-core machine is noisy: one run proves little)."""
    merged = []
    for same_case in zip(*repetitions):
        ordered = sorted(same_case, key=lambda r: r.wall)
        middle = ordered[len(ordered) // 2]
        middle.walls = [r.wall for r in same_case]
        middle.all_ok = all(r.exit_code == 0 and r.outcomes.get(r.expected, 0) == r.pages for r in same_case)
        merged.append(middle)
    return merged


# --- child processes ------------------------------------------------------------------------

def measure(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float, int, str, str]:
    """Run cmd; return (wall seconds, peak RSS in MB, exit code, stdout, stderr).

    os.wait4 gives the rusage of this one child: RUSAGE_CHILDREN would report the largest
    child so far (the site server included), not this run's."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        watchdog = threading.Timer(RUN_TIMEOUT, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
        out.seek(0)
        err.seek(0)
        return (wall, usage.ru_maxrss / 1024, proc.returncode,  # ru_maxrss: KB on Linux
                out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def child_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in PROXY_VARS and k not in ("JOBS_TOML", "NOTIFY_URLS", "DATABASE_URL")}
    env.update(extra)
    return env


STARTUP_IMPORTS = "import functions.scrape, pg8000.native"


def interpreter_start(python: str) -> float:
    """Median wall time of a child that only imports what every scrape run loads (the handler,
    and the PostgreSQL driver it loads on its first connection): the part of the floor no
    concurrency removes."""
    times = [measure([python, "-c", STARTUP_IMPORTS], child_env(), ROOT)[0] for _ in range(5)]
    return statistics.median(times)


# --- the site -------------------------------------------------------------------------------

class SiteProcess:
    """bench/scrape_site.py in its own process, so serving never competes with the client's
    interpreter lock; stopped on exit."""

    def __init__(self, pages_per_host: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.scrape_site", "--hosts", str(HOSTS),
             "--pages-per-host", str(pages_per_host), "--latency", str(LATENCY)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the benchmark site did not start (said {line!r})")
        self.port = int(line)
        # No proxy for our own stats requests either.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def urls(self, pages: int, order: str) -> list[str]:
        """`pages` URLs spread evenly over the hosts. "grouped" lists a host's pages together,
        as people write jobs files (site by site); "interleaved" alternates hosts."""
        per_host = pages // HOSTS
        addresses = [f"127.0.0.{n}" for n in range(2, 2 + HOSTS)]
        pairs = ([(a, i) for a in addresses for i in range(per_host)] if order == "grouped"
                 else [(a, i) for i in range(per_host) for a in addresses])
        return [f"http://{a}:{self.port}/pages/{i}.html" for a, i in pairs]

    def stats(self, reset: bool = False) -> dict:
        path = "/stats/reset" if reset else "/stats"
        with self.opener.open(f"http://127.0.0.1:{self.port}{path}", timeout=10) as answer:
            return json.load(answer)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# --- PostgreSQL -----------------------------------------------------------------------------

class Databases:
    """A fresh database per case on $DATABASE_URL's server (or a throwaway one), dropped at the end."""

    def __init__(self):
        self.pgdata = None
        url = os.environ.get("DATABASE_URL")
        if not url:
            folder = Path(tempfile.mkdtemp(prefix="bench-scrape-"))
            folder.chmod(0o755)  # the postgres user must reach it when we run as root
            self.pgdata = folder / "pgdata"
            url = localpg.ensure_server(self.pgdata)
        self.url = url
        self.created: list[str] = []

    def fresh(self, label: str) -> str:
        name = f"bench_scrape_{os.getpid()}_{label}"
        con = db.connect(self.url)  # pg8000 native: autocommit unless we BEGIN, as CREATE DATABASE needs
        try:
            con.run(f'DROP DATABASE IF EXISTS "{name}"')
            con.run(f'CREATE DATABASE "{name}"')
        finally:
            con.close()
        self.created.append(name)
        return urlsplit(self.url)._replace(path="/" + name).geturl()

    def close(self) -> None:
        try:
            con = db.connect(self.url)
            for name in self.created:
                con.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            con.close()
        finally:
            if self.pgdata:
                localpg.stop_server(self.pgdata)
                shutil.rmtree(self.pgdata.parent, ignore_errors=True)  # a throwaway: keep no data


# --- ours -----------------------------------------------------------------------------------

def conditional_supported(python: str) -> bool:
    """Whether jobs may say `conditional = false` (the lead adds it with ETag support)."""
    probe = "from shared.scrape.job import ScrapeJob; print('conditional' in ScrapeJob.__dataclass_fields__)"
    answer = subprocess.run([python, "-c", probe], cwd=ROOT, capture_output=True, text=True, env=child_env())
    return answer.stdout.strip() == "True"


def write_jobs(path: Path, urls: list[str], conditional: bool | None) -> None:
    lines = []
    for number, url in enumerate(urls):
        lines += ["[[scrape]]", f'name = "page-{number:05d}"', f'url = "{url}"']
        if conditional is not None:
            lines.append(f"conditional = {'true' if conditional else 'false'}")
        lines.append("")
    path.write_text("\n".join(lines))


OUR_LINE = re.compile(r"^\S+: (new|unchanged|changed|duplicate|error)\b", re.M)


def run_ours(python: str, site: SiteProcess, run: Run, jobs_file: Path, database_url: str) -> Run:
    site.stats(reset=True)
    env = child_env(JOBS_FILE=str(jobs_file), DATABASE_URL=database_url)
    run.wall, run.rss_mb, run.exit_code, out, err = measure([python, "-m", "functions.scrape"], env, ROOT)
    run.site = site.stats()
    run.outcomes = count(OUR_LINE.findall(out))
    run.output_tail = (out + err)[-600:]
    return run


def ours_case(python: str, site: SiteProcess, dbs: Databases, work: Path, pages: int, order: str,
              label: str, conditional: bool | None) -> list[Run]:
    """First and second run of our scrape on a fresh database."""
    jobs_file = work / f"jobs-{label}.toml"
    write_jobs(jobs_file, site.urls(pages, order), conditional)
    url = dbs.fresh(label)
    case = {True: "ETag on", False: "ETag off", None: "default"}[conditional]
    return [run_ours(python, site, Run("ours", f"{case}, {which}", pages, expected), jobs_file, url)
            for which, expected in (("first run", "new"), ("second run", "unchanged"))]


# --- urlwatch -------------------------------------------------------------------------------

def urlwatch_bin() -> Path:
    """bench/.venv-urlwatch/bin/urlwatch, created with pip on first use (git-ignored)."""
    exe = URLWATCH_VENV / "bin" / "urlwatch"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout if exe.exists() else ""
    if URLWATCH_VERSION not in version:
        print(f"installing urlwatch {URLWATCH_VERSION} into {URLWATCH_VENV} ...", file=sys.stderr)
        python3 = shutil.which("python3") or sys.executable
        subprocess.run([python3, "-m", "venv", str(URLWATCH_VENV)], check=True)
        subprocess.run([URLWATCH_VENV / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"urlwatch=={URLWATCH_VERSION}"], check=True)
    return exe


# Only the stdout reporter (others are off by default; said again so nothing is ever sent),
# without colour, listing unchanged pages too so every target's outcome can be counted.
URLWATCH_CONFIG = """\
display: {new: true, error: true, unchanged: true, empty-diff: true}
report:
  stdout: {enabled: true, color: false}
  email: {enabled: false}
"""
URLWATCH_LINE = re.compile(r"^(NEW|UNCHANGED|CHANGED|ERROR): ", re.M)


def urlwatch_case(site: SiteProcess, work: Path, pages: int, order: str) -> list[Run]:
    exe = urlwatch_bin()
    home = work / "urlwatch"
    shutil.rmtree(home, ignore_errors=True)  # a fresh cache for every repetition
    home.mkdir()
    urls = home / "urls.yaml"
    urls.write_text("---\n".join(f"url: {u}\n" for u in site.urls(pages, order)))
    (home / "urlwatch.yaml").write_text(URLWATCH_CONFIG)
    cmd = [str(exe), "--urls", str(urls), "--config", str(home / "urlwatch.yaml"),
           "--cache", str(home / "cache.db"), "--hooks", str(home / "hooks.py")]
    # Its own HOME and XDG folders: nothing read from or left in the user's.
    env = child_env(HOME=str(home), XDG_CONFIG_HOME=str(home), XDG_CACHE_HOME=str(home))
    runs = []
    for which, expected in (("first run", "new"), ("second run", "unchanged")):
        run = Run(f"urlwatch {URLWATCH_VERSION}", which, pages, expected)
        site.stats(reset=True)
        run.wall, run.rss_mb, run.exit_code, out, err = measure(cmd, env, home)
        run.site = site.stats()
        run.outcomes = count(w.lower() for w in URLWATCH_LINE.findall(out))
        run.output_tail = (out + err)[-600:]
        runs.append(run)
    return runs


def count(words) -> dict:
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return counts


# --- the report -----------------------------------------------------------------------------

def table(runs: list[Run]) -> str:
    rows = ["| tool | case | pages | wall time (median, range) | peak RSS | requests (200 / 304) | body bytes | "
            "connections | max parallel per host | outcomes | exit / check |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r.site
        outcomes = ", ".join(f"{n} {w}" for w, n in sorted(r.outcomes.items())) or "none"
        spread = f" ({min(r.walls):.2f}–{max(r.walls):.2f})" if len(r.walls) > 1 else ""
        rows.append(f"| {r.tool} | {r.case} | {r.pages:,} | {r.wall:.2f} s{spread} | {r.rss_mb:.0f} MB | "
                    f"{s.get('requests', 0):,} ({s.get('status_200', 0):,} / {s.get('status_304', 0):,}) | "
                    f"{s.get('body_bytes', 0):,} | {s.get('connections', 0):,} | "
                    f"{s.get('max_parallel_per_host', 0)} | {outcomes} | "
                    f"{r.exit_code} / {'ok' if r.ok else 'FAILED: expected ' + str(r.pages) + ' ' + r.expected} |")
    return "\n".join(rows)


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def targets(runs: list[Run], floor: float, pages: int, large: int, etag_supported: bool) -> str:
    """The issue's targets, each with the figures it was judged on."""
    ours = [r for r in runs if r.tool == "ours" and r.pages == pages and not r.case.startswith("ETag off")]
    theirs = [r for r in runs if r.tool.startswith("urlwatch")]
    big = [r for r in runs if r.tool == "ours" and r.pages == large]
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    if ours:
        slowest = max(r.wall for r in ours)
        lines.append(f"| {pages} pages within 1.5× floor ({1.5 * floor:.2f} s) | slowest run {slowest:.2f} s "
                     f"({slowest / floor:.2f}× floor) | {verdict(all(r.ok for r in ours) and slowest <= 1.5 * floor)} |")
        for theirs_run in theirs:
            mine = next(r for r in ours if r.case.endswith(theirs_run.case))
            ratio = theirs_run.wall / mine.wall
            lines.append(f"| ≥ 3× faster than urlwatch, {theirs_run.case} | {theirs_run.wall:.2f} s / "
                         f"{mine.wall:.2f} s = {ratio:.1f}× | {verdict(mine.ok and theirs_run.ok and ratio >= 3)} |")
        peak = max(r.rss_mb for r in ours)
        lines.append(f"| peak memory < 100 MB for {pages} pages | {peak:.0f} MB | {verdict(peak < 100)} |")
        second = ours[-1]
        first_bytes = max(ours[0].site.get("body_bytes", 0), 1)
        bytes_ = second.site.get("body_bytes", 0)
        note = "" if etag_supported else " (no ETag support yet)"
        lines.append(f"| body bytes on an unchanged ETag run ≈ 0 (≤ 1% of the first run's) | {bytes_:,} "
                     f"({100 * bytes_ / first_bytes:.0f}% of {first_bytes:,}){note} | "
                     f"{verdict(etag_supported and second.ok and bytes_ <= first_bytes / 100)} |")
    if big:
        slowest = max(r.wall for r in big)
        lines.append(f"| {large:,} pages within 120 s | slowest run {slowest:.2f} s | "
                     f"{verdict(all(r.ok for r in big) and slowest <= 120)} |")
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------

def concurrency() -> int | None:
    """What our scrape will use: $SCRAPE_CONCURRENCY, else shared.scrape.run.CONCURRENCY."""
    if os.environ.get("SCRAPE_CONCURRENCY", "").isdigit():
        return int(os.environ["SCRAPE_CONCURRENCY"])
    from shared.scrape import run as scrape
    return getattr(scrape, "CONCURRENCY", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=500, help="pages of the main case (a multiple of 50)")
    parser.add_argument("--large-pages", type=int, default=5000, help="pages of the large case (ours only)")
    parser.add_argument("--skip-urlwatch", action="store_true")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repetitions of each 500-page case (fresh database and cache each time); the median is shown")
    parser.add_argument("--order", choices=("grouped", "interleaved"), default="grouped",
                        help="jobs listed site by site (as people write them) or alternating hosts")
    args = parser.parse_args()
    if args.pages % HOSTS or args.large_pages % HOSTS:
        parser.error(f"page counts must be multiples of {HOSTS} (pages are spread evenly over the hosts)")

    python = sys.executable  # the project's .venv python when run by make
    compile_as_deployed(python)
    site = SiteProcess(max(args.pages, args.large_pages) // HOSTS)
    dbs = Databases()
    work = Path(tempfile.mkdtemp(prefix="bench-scrape-work-"))
    try:
        report(args, python, site, dbs, work)
    finally:
        site.stop()
        dbs.close()
        shutil.rmtree(work, ignore_errors=True)


def compile_as_deployed(python: str) -> None:
    """Our bytecode, as every deployment has it (Heroku's build runs bin/post_compile, the Lambda
    zip ships .pyc files, a checkout writes them on first use): without it, with
    PYTHONDONTWRITEBYTECODE set, each run would compile our modules again. urlwatch's own were
    compiled by pip when it was installed."""
    env = {**os.environ, "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(["bash", str(ROOT / "bin" / "post_compile")], cwd=ROOT, env=env, check=True)


def report(args, python: str, site: SiteProcess, dbs: Databases, work: Path) -> None:
    start = interpreter_start(python)
    parallel = concurrency()
    etag = conditional_supported(python)
    repetitions = []
    for _ in range(args.repeat):
        runs: list[Run] = []
        if etag:
            runs += ours_case(python, site, dbs, work, args.pages, args.order, "on", True)
            runs += ours_case(python, site, dbs, work, args.pages, args.order, "off", False)
        else:
            runs += ours_case(python, site, dbs, work, args.pages, args.order, "default", None)
        if not args.skip_urlwatch:
            runs += urlwatch_case(site, work, args.pages, args.order)
        repetitions.append(runs)
    runs = median_runs(repetitions)
    if not args.skip_large:
        runs += ours_case(python, site, dbs, work, args.large_pages, args.order, "large", None)

    floor = args.pages * LATENCY / parallel + start if parallel else float("nan")
    print(f"\nScrape speed, {date.today().isoformat()}: {HOSTS} hosts, {LATENCY * 1000:.0f} ms per answer, "
          f"~2 kB pages, jobs {args.order} by site, {os.cpu_count()} CPUs\n")
    print(table(runs))
    print(f"\nFloor for {args.pages} pages: {args.pages} × {LATENCY} s / concurrency {parallel} "
          f"+ interpreter start {start:.2f} s (`python -c '{STARTUP_IMPORTS}'`, median of 5) "
          f"= {floor:.2f} s")
    if not etag:
        print("ETag support is not there yet (ScrapeJob has no `conditional` key): "
              "one case with the default settings instead of ETag on / off.")
    print()
    print(targets(runs, floor, args.pages, 0 if args.skip_large else args.large_pages, etag))
    for run in runs:
        if not run.ok:
            print(f"\n{run.tool}, {run.case}: exit {run.exit_code}, output ends with:\n{run.output_tail}")


if __name__ == "__main__":
    main()
