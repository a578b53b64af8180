"""An attack on the scrape job's promises, from outside: servers that trickle, redirect forever
or answer in pieces, URLs and arguments nobody should pass, secrets with awkward characters.
Each test names the promise it holds the code to; none depends on how fast the machine is (the
servers' delays are lower bounds, and a fixed run ends the way the assertion says however slow)."""

import json
import time

import pytest

from shared.app import events
from shared.core import log
from shared.core.errors import EventError
from shared.scrape import fetch
from shared.scrape.job import ScrapeJob
from tests import runs
from tests.loopback import RawServer

HEALTHY = ["healthy-0", "healthy-1"]
GIVE_UP = 20  # seconds a hostile server keeps at it; then it ends its answer well, so a build whose
# timeout does not hold fails (stores it) instead of hanging


class Site(RawServer):
    """A loopback server whose answers are functions of (connection, request target): they may
    write slowly, or forever (until GIVE_UP, or until the client hangs up)."""

    timeout = GIVE_UP

    def __init__(self):
        self.answers = {}
        self.requests: list[str] = []
        self.raw: dict[str, bytes] = {}  # request target -> the last request for it, as received
        super().__init__()

    def respond(self, conn, target, request):
        self.requests.append(target)
        self.raw[target] = request
        path = target.lstrip("/").split("?")[0].split("/")[0]  # /chain/3 is answered by "chain"
        self.answers.get(path, lambda c, t: c.sendall(ok(b"")))(conn, target)


def ok(body: bytes, headers: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body


def trickle(conn, data: bytes, every: float = 0.05):
    """Send `data` a byte at a time, until GIVE_UP."""
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > GIVE_UP:
            return
        conn.sendall(bytes([byte]))
        time.sleep(every)


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


@pytest.mark.parametrize("argv, says", [
    (["--url", "http://[::1"], "url is not a valid URL"),
    (["--url", "http://127.0.0.1:1/", "--run-key", "\udcff"], "--run-key holds a NUL or an unpaired surrogate"),
    (["--url", "http://127.0.0.1:1/", "--name", "\udcff"], "--name holds a NUL or an unpaired surrogate"),
    (["--url", "http://127.0.0.1:1/", "--name", "two\nlines"], "name 'two\\nlines' may use letters"),
    (["--url", "http://127.0.0.1:1/\udcff"], "--url holds a NUL or an unpaired surrogate"),
    (["--job", "\udcff"], "--job holds a NUL or an unpaired surrogate"),
])
def test_bad_arguments_are_one_line_and_exit_2(database_url, jobs_file, capsys, argv, says):
    from functions import scrape as scrape_fn

    jobs_file('[[scrape]]\nname = "a"\nurl = "http://127.0.0.1:1/"\n')
    assert scrape_fn.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and says in err, err


@pytest.mark.parametrize("event, says", [
    ({"url": "http://[::1/"}, "event 'url' is not a valid URL"),
    ({"url": "http://reader:pw-event-5531@[zz]/"}, "event 'url' is not a valid URL"),
    ({"url": "http://127.0.0.1:1/", "name": "two\nlines"}, "event 'name' may use letters"),
    ({"url": "http://127.0.0.1:1/", "name": "../../etc"}, "event 'name' may use letters"),
])
def test_bad_ad_hoc_events_are_event_errors(event, says):
    with pytest.raises(EventError) as caught:
        events.parse_all(event)
    assert says in str(caught.value) and "\n" not in str(caught.value) and "pw-event" not in str(caught.value)


# --- secrets --------------------------------------------------------------------------------------

def test_a_secret_with_awkward_characters_is_redacted_in_every_form_a_page_echoes(
        database_url, db, site, jobs_file, monkeypatch, capsys):
    """The page echoes its request as sent (urllib3 %-encodes a space and a non-ASCII letter) and
    as HTML (an ampersand becomes &amp;)."""
    from functions import scrape as scrape_fn

    secret = "Zq7 k\u00e9y&Wv9"
    monkeypatch.setenv("FEED_KEY", secret)

    def echo(conn, target):
        conn.sendall(ok(f"<p>sent: {target}</p><p>shown: {secret.replace('&', '&amp;')}</p>".encode()))

    site.answers["feed"] = echo
    jobs_file(f'[[scrape]]\nname = "feed"\nurl = "{site.url("feed")}?key=${{FEED_KEY}}"\n')
    assert scrape_fn.main([]) == 0
    assert site.requests[-1] != "/feed?key=" + secret  # it was sent %-encoded
    stored = json.dumps(db.run("SELECT t.url, c.body FROM scrape_targets t JOIN scrape_contents c ON c.target_id = t.id"),
                        ensure_ascii=False)
    out, err = capsys.readouterr()
    for text in (stored, out, err):
        assert "Zq7" not in text and "Wv9" not in text


def test_a_pattern_error_never_shows_part_of_a_secret_cut_by_its_trimming(database_url, jobs_file, monkeypatch,
                                                                        capsys):
    from functions import scrape as scrape_fn

    monkeypatch.setenv("NOISE_TOKEN", "tok-31415926535-alpha")
    # Invalid (an unbalanced parenthesis) and long enough to be trimmed, the secret across the cut.
    jobs_file('[[scrape]]\nname = "a"\nurl = "http://127.0.0.1:1/"\nignore = ["(' + "x" * 30 + '${NOISE_TOKEN}' +
              "y" * 40 + '"]\n')
    assert scrape_fn.main([]) == 2
    err = capsys.readouterr().err
    assert "not a valid regular expression" in err and "tok-3" not in err and "alpha" not in err


def test_a_secret_in_a_json_log_line_is_redacted_though_json_escapes_it(monkeypatch, capsys):
    import logging
    import sys

    monkeypatch.setenv("LOG_FORMAT", "json")
    secret = 'pa"ss\\w0rd-2718'
    log.add_secret(secret)
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers = [logging.StreamHandler(sys.stdout)]
    try:
        log.setup()
        logging.getLogger("attack").warning("connecting with %s", secret)
    finally:
        root.handlers = saved
        monkeypatch.setenv("LOG_FORMAT", "text")
        log.setup()
    record = json.loads(capsys.readouterr().out)
    assert record["message"] == "connecting with ***"


def test_an_event_naming_no_job_runs_none_rather_than_all():
    with pytest.raises(EventError, match="event 'jobs' names no job"):
        events.parse_all({"jobs": [], "scheduled_time": "2026-11-21T10:00:00Z"})


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


@pytest.mark.parametrize("argv", [["--bogus"], ["--time-budget", "abc"], ["--url"]])
def test_arguments_argparse_refuses_are_one_line_too(capsys, argv):
    from functions import scrape as scrape_fn

    with pytest.raises(SystemExit) as exited:
        scrape_fn.main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
