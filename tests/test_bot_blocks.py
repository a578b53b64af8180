"""Bot protection told apart from a page (shared/scrape/blocks.py): a challenge or block page is
that check's error, counted in the streak, never stored and never a change."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3 import HTTPHeaderDict
from werkzeug import Response

from functions import scrape as scrape_fn
from shared.scrape import blocks

CHALLENGE = ("<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
             "<script>window._cf_chl_opt={cvId: '3'};</script></body></html>")


@pytest.mark.parametrize("status, headers, body, sign", [
    (403, {"cf-mitigated": "challenge", "server": "cloudflare"}, CHALLENGE, "Cloudflare: challenge"),
    (503, {"server": "cloudflare"}, CHALLENGE, "Cloudflare: challenge page"),
    (202, {"x-amzn-waf-action": "challenge"}, "", "AWS WAF: challenge"),
    (403, {"x-datadome": "protected"}, "<html>blocked</html>", "DataDome: captcha"),
    (403, {}, "<iframe src='https://geo.captcha-delivery.com/captcha/'>", "DataDome: captcha"),
    (403, {}, "Request unsuccessful. Incapsula incident ID: 123", "Imperva: block page"),
    (403, {"server": "AkamaiGHost"}, "<H1>Access Denied</H1> Reference #18.abc", "Akamai: access denied"),
    (403, {"x-sucuri-block": "1"}, "", "Sucuri: access denied"),
    (403, {}, "<div id='px-captcha'></div>", "PerimeterX: captcha"),
])
def test_each_services_signs_name_it(status, headers, body, sign):
    assert blocks.block(status, HTTPHeaderDict(headers), body.encode()) == sign


@pytest.mark.parametrize("status, headers, body", [
    (200, {"server": "cloudflare"}, "<p>Just a moment, loading the agenda</p>"),  # words on a real page
    (403, {"server": "nginx"}, "Forbidden"),
    (503, {"server": "cloudflare"}, "<p>origin down</p>"),
])
def test_ordinary_pages_and_errors_are_not_blocks(status, headers, body):
    assert blocks.block(status, HTTPHeaderDict(headers), body.encode()) is None


@settings(max_examples=300)
@given(st.integers(min_value=100, max_value=599), st.dictionaries(st.sampled_from(
    ["server", "cf-mitigated", "x-datadome", "x-amzn-waf-action", "x-sucuri-block", "x-other"]),
    st.text(max_size=20), max_size=4), st.binary(max_size=2000))
def test_any_answer_is_a_block_or_not_without_error(status, headers, body):
    found = blocks.block(status, HTTPHeaderDict(headers), body)
    assert found is None or (isinstance(found, str) and ": " in found)


def test_a_challenge_page_is_a_check_error_never_stored(database_url, db, httpserver, jobs_file, capsys):
    state = {"blocked": False}
    httpserver.expect_request("/agenda").respond_with_handler(
        lambda r: Response(CHALLENGE, status=403, headers={"cf-mitigated": "challenge", "server": "cloudflare"},
                           content_type="text/html") if state["blocked"] else Response("<p>agenda</p>"))
    jobs_file(f'[[scrape]]\nname = "agenda"\nurl = "{httpserver.url_for("/agenda")}"\n')
    assert scrape_fn.main([]) == 0
    state["blocked"] = True
    assert scrape_fn.main([]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "agenda: error: blocked by bot protection (Cloudflare: challenge)"
    assert db.run("SELECT body FROM scraps") == [["<p>agenda</p>"]]  # the challenge never stored
    assert db.run("SELECT error_streak FROM scrape_targets")[0][0] == 1
    state["blocked"] = False
    assert scrape_fn.main([]) == 0
    assert capsys.readouterr().out == "agenda: unchanged\n"  # not a change after the block
