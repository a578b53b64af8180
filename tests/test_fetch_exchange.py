"""A fetch's whole exchange, against servers that trickle, redirect forever or answer in pieces:
the job's timeout covers all of it, a cut-short fetch leaves the connection pool clean, a URL
that cannot be parsed fails alone, a URL's user-info goes as basic auth and nowhere else. None
depends on how fast the machine is (the servers' delays are lower bounds)."""

import json
import time

import pytest

from shared.scrape import fetch
from shared.scrape.job import ScrapeJob
from tests import runs
from tests.loopback import GIVE_UP, Site, SlowHandshake, ok, trickle

HEALTHY = ["healthy-0", "healthy-1"]


@pytest.fixture
def site():
    server = Site()
    for name in HEALTHY:
        server.answers[name] = lambda c, t, name=name: c.sendall(ok(f"<p>{name}</p>".encode()))
    server.answers["empty"] = lambda c, t: c.sendall(ok(b""))
    yield server
    server.close()


def run_beside_healthy(site: Site, hostile: ScrapeJob) -> dict:
    jobs = [hostile] + [ScrapeJob(name, site.url(name), timeout=60) for name in HEALTHY]
    by_name = {r.name: r for r in runs.scrape(jobs)}
    assert [by_name[name].outcome for name in HEALTHY] == ["new"] * len(HEALTHY), by_name
    return by_name


# --- a job's timeout covers the whole exchange ---------------------------------------------------

def slow_headers(conn, target):
    # A status line, then one endless header line: each byte arrives well within any read
    # timeout, so only a bound on the whole exchange ends it.
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    trickle(conn, b"a" * 60_000)
    conn.sendall(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def endless_redirect_body(conn, target):
    # A redirect whose body never ends: urllib3 drains a redirect's body before following it.
    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /empty\r\nTransfer-Encoding: chunked\r\n\r\n")
    started = time.monotonic()
    while time.monotonic() - started < GIVE_UP:
        conn.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
        time.sleep(0.001)
    conn.sendall(b"0\r\n\r\n")


def slow_redirects(conn, target):
    # Each hop answers within the job's timeout; ten of them do not.
    hop = int(target.rsplit("/", 1)[-1])
    time.sleep(0.6)
    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /chain/%d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                 % (hop + 1) if hop < 8 else ok(b""))


@pytest.mark.parametrize("answer", [slow_headers, endless_redirect_body, slow_redirects])
def test_a_job_timeout_bounds_the_whole_exchange_not_each_read(database_url, site, answer):
    site.answers["hostile"] = site.answers["chain"] = answer
    path = "chain/0" if answer is slow_redirects else "hostile"
    by_name = run_beside_healthy(site, ScrapeJob("hostile", site.url(path), timeout=2))
    assert by_name["hostile"].outcome == "error"
    assert by_name["hostile"].reason == "timed out: no complete answer within 2 s"


def test_a_retried_fetch_after_an_unasked_304_gets_only_what_is_left_of_the_timeout(database_url, site):
    def not_modified_then_slow(conn, target):
        if len([t for t in site.requests if t == "/page"]) == 1:
            time.sleep(1.5)  # a 304 nobody asked for, late
            conn.sendall(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            time.sleep(1.0)  # the plain retry: within a fresh 2 s, not within what is left
            conn.sendall(ok(b"<p>page</p>"))

    site.answers["page"] = not_modified_then_slow
    by_name = run_beside_healthy(site, ScrapeJob("page", site.url("page"), timeout=2))
    assert by_name["page"].outcome == "error" and by_name["page"].reason.startswith("timed out")


def test_a_fetch_cut_short_never_spoils_the_connection_for_the_next_fetch(site):
    site.answers["slow"] = slow_headers
    pool = fetch.new_pool(hosts=1, per_host=1)
    with pytest.raises(fetch.FetchError, match="timed out"):
        fetch.fetch(pool, site.url("slow"), total_timeout=0.5)
    for _ in range(3):  # reused connections are left alone by the expired fetch's watch
        assert fetch.fetch(pool, site.url("healthy-0"), total_timeout=30).text == "<p>healthy-0</p>"


def test_a_tls_handshake_that_trickles_ends_at_the_timeout():
    """The handshake's reads count too: the plain socket is watched before TLS wraps it (Python
    bounds a handshake by the socket's timeout, here a connect timeout longer than the fetch's)."""
    server = SlowHandshake()
    try:
        started = time.monotonic()
        with pytest.raises(fetch.FetchError, match="timed out"):
            fetch.fetch(fetch.new_pool(), f"https://127.0.0.1:{server.port}/", connect_timeout=60, total_timeout=1)
        assert time.monotonic() - started < GIVE_UP  # the trickle itself would take an hour
    finally:
        server.close()


# --- URLs and arguments ---------------------------------------------------------------------------

def test_a_job_whose_url_cannot_be_parsed_fails_alone_without_showing_its_password(
        database_url, site, jobs_file, capsys):
    from functions import scrape as scrape_fn

    jobs_file(f'''
[[scrape]]
name = "broken"
url = "http://reader:pw-broken-7731@[::1/page"

[[scrape]]
name = "good"
url = "{site.url('healthy-0')}"
''')
    assert scrape_fn.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "good: new\n"
    assert err.startswith("error: ") and "[[scrape]] job 'broken': key 'url' is not a valid URL" in err
    assert "Traceback" not in err and "pw-broken" not in err


# --- secrets --------------------------------------------------------------------------------------


def test_a_password_in_the_url_is_sent_as_basic_auth_never_stored_nor_sent_elsewhere(database_url, db, site):
    """urlwatch (through requests) logs in with a URL's user-info, and --adopt-urlwatch writes it
    there: urllib3 alone would drop it. A page echoing its request headers must not store it, and
    a redirect to another server must not carry it."""
    import base64

    other = Site()
    try:
        other.answers["landing"] = lambda c, t: c.sendall(ok(b"<p>landed</p>"))
        site.answers["echo"] = lambda c, t: c.sendall(ok(b"<pre>" + site.raw[t] + b"</pre>"))
        site.answers["away"] = lambda c, t: c.sendall(
            b"HTTP/1.1 302 Found\r\nLocation: " + other.url("landing").encode() +
            b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        jobs = [ScrapeJob(name, f"http://reader:pw-basic-9913@127.0.0.1:{site.port}/{name}") for name in ("echo", "away")]
        assert [r.outcome for r in runs.scrape(jobs)] == ["new", "new"]
        token = base64.b64encode(b"reader:pw-basic-9913")
        assert b"authorization: basic " + token.lower() in site.raw["/echo"].lower()
        stored = json.dumps(db.run("SELECT body FROM scraps"))
        assert token.decode() not in stored and "pw-basic" not in stored
        assert b"authorization" not in other.raw["/landing"].lower()
    finally:
        other.close()


