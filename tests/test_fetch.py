"""Fetching pages: text decoding and redirects, against a loopback server."""

import pytest
from werkzeug import Response

from shared.scrape import fetch


@pytest.mark.parametrize(
    "raw, content_type, text",
    [
        ("café".encode("latin-1"), "text/html; charset=ISO-8859-1", "café"),  # the server's word wins
        ("café".encode(), "text/html", "café"),  # no charset: UTF-8 when it decodes
        ("café".encode("cp1252"), "text/html", "café"),  # not UTF-8: what browsers assume
        (b'<meta charset="koi8-r">' + "мир".encode("koi8-r"), "text/html", '<meta charset="koi8-r">мир'),
        (b"\xef\xbb\xbfhello", "text/plain", "hello"),  # a UTF-8 byte order mark
        ("café".encode(), "text/html; charset=nonsense", "café"),  # an unknown charset is skipped
    ],
)
def test_decoding(raw, content_type, text):
    assert fetch.decode(raw, content_type) == text


def test_fetch_follows_redirects_and_says_so(httpserver):
    httpserver.expect_request("/old").respond_with_response(Response(status=301, headers={"Location": "/new"}))
    httpserver.expect_request("/new").respond_with_data("moved here", headers={"ETag": '"n1"'})
    page = fetch.fetch(fetch.new_pool(), httpserver.url_for("/old"))
    assert (page.text, page.redirected, page.etag, page.url.endswith("/new")) == ("moved here", True, '"n1"', True)
    assert fetch.fetch(fetch.new_pool(), httpserver.url_for("/new")).redirected is False


def test_a_redirect_loop_is_a_failed_check(httpserver):
    httpserver.expect_request("/loop").respond_with_response(Response(status=302, headers={"Location": "/loop"}))
    with pytest.raises(fetch.FetchError, match="more than 10 redirects"):
        fetch.fetch(fetch.new_pool(), httpserver.url_for("/loop"))


def test_invalid_url_is_a_failed_check():
    with pytest.raises(fetch.FetchError, match="invalid URL|connection failed"):
        fetch.fetch(fetch.new_pool(), "http://exa mple.org:99999/")
