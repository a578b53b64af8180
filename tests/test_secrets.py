"""Secrets (what a ${VAR} brings in, a password in a URL) stay secret in every form a page, a
pattern error or a log line can give them: never stored, printed, logged or sent elsewhere."""

import json

import pytest

from shared.core import log
from shared.scrape.job import ScrapeJob
from tests import runs
from tests.loopback import Site, answer, ok


@pytest.fixture
def site():
    server = Site()
    yield server
    server.close()


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



def test_a_page_echoing_its_secret_url_never_stores_or_sends_the_secret(database_url, db, raw_site, monkeypatch):
    secret = "tok-8c1f2e9d7b"
    monkeypatch.setenv("FEED_TOKEN", secret)
    log.add_secret(secret)  # what expanding ${FEED_TOKEN} does
    url = raw_site.url(f"echo?token={secret}")
    raw_site.answers[f"echo?token={secret}"] = answer(f"<p>you asked for {url}</p>".encode())
    (result,) = runs.scrape([ScrapeJob("echo", url)])
    assert result.outcome == "new"
    body, target_url = db.run("SELECT c.body, t.url FROM scrape_contents c JOIN scrape_targets t ON t.id = c.target_id")[0]
    assert secret not in body and "***" in body and secret not in target_url


def test_a_password_in_a_literal_url_is_secret_and_never_in_a_generated_name(database_url, db, raw_site, capsys):
    from functions import scrape as scrape_fn

    raw_site.answers["p"] = answer(b"<p>x</p>")
    url = f"http://reader:pw-literal-5521@127.0.0.1:{raw_site.port}/p"
    assert scrape_fn.main(["--url", url]) == 0
    out = capsys.readouterr().out
    assert "pw-literal-5521" not in out and "reader" not in out
    assert "pw-literal-5521" not in json.dumps(db.run("SELECT name, url FROM scrape_targets"))

