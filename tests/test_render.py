"""Pages whose text is written by JavaScript, rendered in a real headless Chromium, through both
renderers (shared/scrape/render.py): the local browser, and BROWSER_URL against the same `/content`
API browserless serves (devtools/renderer.py)."""

import shutil

import pytest
from werkzeug import Response

from devtools import renderer
from functions import scrape as scrape_fn

pytestmark = pytest.mark.skipif(not shutil.which("chromium"), reason="needs chromium (CI installs it)")

PAGE = """<html><body><div id="agenda">loading...</div><script>
setTimeout(function () { document.getElementById('agenda').textContent = 'Item ' + (40 + 2) + ': budget'; }, 50);
</script></body></html>"""


@pytest.fixture
def page(httpserver):
    httpserver.expect_request("/agenda").respond_with_handler(lambda r: Response(PAGE, content_type="text/html"))
    return httpserver.url_for("/agenda")


@pytest.fixture
def service():
    server = renderer.serve()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize("through", ["local", "service"])
def test_a_page_written_by_javascript_is_stored_as_rendered(database_url, db, page, service, jobs_file,
                                                            monkeypatch, capsys, through):
    if through == "service":
        monkeypatch.setenv("BROWSER_URL", service)
    else:
        monkeypatch.delenv("BROWSER_URL", raising=False)
    jobs_file(f'[[scrape]]\nname = "agenda"\nurl = "{page}"\nrender = "browser"\nselect = "#agenda"\n')
    assert scrape_fn.main([]) == 0
    assert capsys.readouterr().out == "agenda: new\n"
    assert db.run("SELECT body FROM scraps")[0][0] == "Item 42: budget"


def test_without_render_the_shell_is_what_a_plain_fetch_sees(database_url, db, page, jobs_file, capsys):
    jobs_file(f'[[scrape]]\nname = "agenda"\nurl = "{page}"\nselect = "#agenda"\n')
    assert scrape_fn.main([]) == 0
    assert db.run("SELECT body FROM scraps")[0][0] == "loading..."


def test_a_render_that_cannot_finish_in_time_is_the_checks_error(database_url, jobs_file, monkeypatch, capsys):
    monkeypatch.setenv("BROWSER_URL", "http://127.0.0.1:1")  # nothing listens: the service path fails at once
    jobs_file('[[scrape]]\nname = "agenda"\nurl = "http://127.0.0.1:1/x"\nrender = "browser"\n')
    assert scrape_fn.main([]) == 1
    line = capsys.readouterr().out
    assert line.startswith("agenda: error: rendering service failed") and line.count("\n") == 1, line


def test_render_is_checked_when_the_job_is_built(database_url, jobs_file, capsys):
    path = jobs_file('[[scrape]]\nname = "a"\nurl = "http://127.0.0.1:1/"\nrender = "firefox"\n')
    assert scrape_fn.main([]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}: [[scrape]] job 'a': key 'render' must be \"browser\"")


def test_a_local_render_is_stopped_at_the_jobs_timeout(database_url, jobs_file, monkeypatch, capsys):
    import time

    from tests.loopback import Site

    site = Site()
    site.answers["slow"] = lambda conn, target: time.sleep(8)  # never answers within the timeout
    monkeypatch.delenv("BROWSER_URL", raising=False)
    try:
        jobs_file(f'[[scrape]]\nname = "slow"\nurl = "{site.url("slow")}"\nrender = "browser"\ntimeout = 3\n')
        started = time.monotonic()
        assert scrape_fn.main([]) == 1
        assert time.monotonic() - started < 30
        assert capsys.readouterr().out.startswith("slow: error: timed out")
    finally:
        site.close()
