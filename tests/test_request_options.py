"""What a scrape job sends (shared/scrape/request.py): headers and cookies whose ${VAR} values are
secrets (sent, never stored, printed or mailed), POST with a form or a string, and one line for
a request that cannot be sent as written."""

import json

import pytest
from werkzeug import Response

from functions import history as history_fn
from functions import scrape as scrape_fn


@pytest.fixture
def echo(httpserver):
    """A page that shows what it was sent (as a badly written API might), and a webhook."""
    seen, hooks = [], []

    def page(request):
        seen.append(request)
        return Response(f"<p>{request.method} {request.headers.get('Authorization')} {request.headers.get('Cookie')}"
                        f" {request.get_data(as_text=True)}</p><p>{len(seen)}</p>", content_type="text/html")

    httpserver.expect_request("/api").respond_with_handler(page)
    httpserver.expect_request("/hook", method="POST").respond_with_handler(
        lambda r: hooks.append(json.loads(r.get_data())) or Response("{}"))
    return {"url": httpserver.url_for("/api"), "seen": seen, "hooks": hooks,
            "hook": f"json://127.0.0.1:{httpserver.port}/hook"}


def test_a_header_from_a_variable_is_sent_and_never_stored_printed_or_mailed(database_url, db, echo, jobs_file,
                                                                            monkeypatch, capsys):
    monkeypatch.setenv("API_TOKEN", "tok-5544-secret")
    jobs_file(f'[[scrape]]\nname = "api"\nurl = "{echo["url"]}"\nnotify = ["{echo["hook"]}"]\n'
              'headers = {Authorization = "Bearer ${API_TOKEN}", Accept = "text/html"}\n'
              'cookies = {session = "${API_TOKEN}"}\n')
    assert scrape_fn.main([]) == 0
    assert scrape_fn.main(["--every", "10m"]) == 0  # a change (the counter): a message with the diff
    first = echo["seen"][0]
    assert first.headers["Authorization"] == "Bearer tok-5544-secret" and first.headers["Accept"] == "text/html"
    assert first.headers["Cookie"] == "session=tok-5544-secret"
    stored = json.dumps(db.run("SELECT body FROM scraps"))
    out, err = capsys.readouterr()
    assert history_fn.main(["show", "api", "1"]) == 0
    shown = capsys.readouterr().out
    for text in (stored, out, err, shown, json.dumps(echo["hooks"])):
        assert "tok-5544" not in text and "5544-secret" not in text
    assert "***" in stored and echo["hooks"]


def test_post_sends_a_form_or_a_string_and_never_conditional_requests(database_url, echo, jobs_file, capsys):
    jobs_file(f'[[scrape]]\nname = "form"\nurl = "{echo["url"]}"\nmethod = "POST"\ndata = {{q = "budget 2026"}}\n\n'
              f'[[scrape]]\nname = "text"\nurl = "{echo["url"]}"\nmethod = "POST"\ndata = "raw body"\n')
    assert scrape_fn.main([]) == 0
    assert scrape_fn.main([]) == 0
    first = echo["seen"][:2]  # the two jobs run side by side: in either order
    (form,) = [r for r in first if "budget" in r.get_data(as_text=True)]
    (text,) = [r for r in first if r is not form]
    assert (form.method, form.get_data(as_text=True), form.headers["Content-Type"]) == (
        "POST", "q=budget+2026", "application/x-www-form-urlencoded")
    assert text.get_data(as_text=True) == "raw body"
    assert not any("If-None-Match" in r.headers or "If-Modified-Since" in r.headers for r in echo["seen"])


@pytest.mark.parametrize("keys, says", [
    ('headers = {"Bad Name" = "x"}', "key 'headers': 'Bad Name' is not a valid header name"),
    ('headers = {X-Test = "a\\r\\nInjected: 1"}', "key 'headers': the value of 'X-Test' must be text"),
    ('cookies = {s = "a; b"}', "key 'cookies': the value of 's' must be text"),
    ('method = "DELETE"', "key 'method' must be one of 'GET', 'POST'"),
    ('data = "x"', 'key \'data\' is sent with method = "POST" only'),
    ('headers = "Authorization: x"', "key 'headers' must be a table of names and text values"),
])
def test_a_request_that_cannot_be_sent_as_written_is_one_line(database_url, jobs_file, capsys, keys, says):
    path = jobs_file(f'[[scrape]]\nname = "a"\nurl = "http://127.0.0.1:1/"\n{keys}\n')
    assert scrape_fn.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: [[scrape]] job 'a': {says}") and err.count("\n") == 1, err
