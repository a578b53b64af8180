"""Smoke test of the scrape benchmark's loopback site (bench/scrape_site.py): the benchmark
itself is not part of the suite, but its numbers are only worth something if the site answers
with stable pages, honours validators and counts what it sends."""

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.scrape_site import page_body

ROOT = Path(__file__).resolve().parent.parent
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


@pytest.fixture
def site_port():
    proc = subprocess.Popen([sys.executable, "-m", "bench.scrape_site", "--hosts", "3", "--pages-per-host", "2",
                             "--latency", "0.01"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get(url: str, **headers):
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_pages_are_stable_and_validators_give_304(site_port):
    status, headers, page = get(f"http://127.0.0.4:{site_port}/pages/1.html")
    assert status == 200 and page == page_body("127.0.0.4", 1) and 1900 <= len(page) <= 2100
    assert page != page_body("127.0.0.3", 1)  # each host its own content
    assert get(f"http://127.0.0.4:{site_port}/pages/1.html", **{"If-None-Match": headers["ETag"]})[:1] == (304,)
    status, _, body = get(f"http://127.0.0.4:{site_port}/pages/1.html",
                          **{"If-Modified-Since": headers["Last-Modified"]})
    assert (status, body) == (304, b"")
    assert get(f"http://127.0.0.4:{site_port}/pages/2.html")[0] == 404  # beyond --pages-per-host
    stats = json.load(opener.open(f"http://127.0.0.1:{site_port}/stats/reset", timeout=10))
    assert (stats["requests"], stats["status_200"], stats["status_304"]) == (4, 1, 2)
    assert stats["body_bytes"] == len(page)  # 304s and 404s send no page bytes
    assert json.load(opener.open(f"http://127.0.0.1:{site_port}/stats", timeout=10))["requests"] == 0
