"""Content by type (shared/scrape/content.py): a JSON answer stored as stable, sorted, indented
JSON; `json = "<JMESPath>"` keeps only what it selects, so a volatile field alone is `unchanged`."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug import Response

from functions import scrape as scrape_fn
from shared.scrape import content


@pytest.fixture
def api(httpserver):
    state = {"doc": {"generated": "2026-12-03T10:00:00Z", "items": [{"title": "budget", "status": "open"}]},
             "type": "application/json"}
    httpserver.expect_request("/api").respond_with_handler(
        lambda r: Response(state.get("raw") or json.dumps(state["doc"]), content_type=state["type"]))
    state["url"] = httpserver.url_for("/api")
    return state


def test_a_selected_json_answer_is_unchanged_when_only_a_volatile_field_moves(database_url, db, api, jobs_file,
                                                                             capsys):
    jobs_file(f'[[scrape]]\nname = "api"\nurl = "{api["url"]}"\njson = "items[?status==\'open\'].title"\n')
    assert scrape_fn.main([]) == 0
    api["doc"]["generated"] = "2026-12-03T10:10:00Z"  # volatile: not selected
    assert scrape_fn.main([]) == 0
    api["doc"]["items"].append({"title": "parks", "status": "open"})
    assert scrape_fn.main([]) == 0
    assert capsys.readouterr().out == "api: new\napi: unchanged\napi: changed\n"
    assert db.run("SELECT body FROM scraps ORDER BY id")[-1][0] == '[\n  "budget",\n  "parks"\n]'


def test_a_json_answer_is_stored_sorted_and_indented_so_key_order_is_no_change(database_url, db, api, jobs_file,
                                                                               capsys):
    jobs_file(f'[[scrape]]\nname = "api"\nurl = "{api["url"]}"\n')
    assert scrape_fn.main([]) == 0
    api["doc"] = dict(reversed(list(api["doc"].items())))  # the same document, keys in another order
    assert scrape_fn.main([]) == 0
    assert capsys.readouterr().out == "api: new\napi: unchanged\n"
    assert db.run("SELECT body FROM scraps")[0][0].startswith('{\n  "generated": ')


def test_an_answer_that_is_not_json_is_that_checks_error_never_a_change(database_url, db, api, jobs_file, capsys):
    jobs_file(f'[[scrape]]\nname = "api"\nurl = "{api["url"]}"\njson = "items"\n')
    assert scrape_fn.main([]) == 0
    api["raw"], api["type"] = "<html>down for maintenance</html>", "text/html"
    assert scrape_fn.main([]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("api: error: the answer is not JSON, which key 'json' selects from")
    assert db.run("SELECT count(*) FROM scraps")[0][0] == 1  # nothing stored, no change


@pytest.mark.parametrize("expression", ["items[?", "", "items[?a==`1]"])
def test_a_bad_expression_is_a_config_error_naming_the_key(database_url, jobs_file, capsys, expression):
    path = jobs_file(f'[[scrape]]\nname = "a"\nurl = "http://127.0.0.1:1/"\njson = {json.dumps(expression)}\n')
    assert scrape_fn.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: [[scrape]] job 'a': key 'json'") and err.count("\n") == 1, err


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=4), max_leaves=20)


@given(json_values)
def test_normalized_json_is_the_same_whatever_the_key_order_or_spacing(document):
    compact = json.dumps(document, separators=(",", ":"))
    spaced = json.dumps(document, indent=4)
    assert content.normalized(compact, "application/json", None) == content.normalized(spaced, "application/json",
                                                                                          None)
    assert json.loads(content.normalized(compact, "application/json", None)) == document


@given(st.text(max_size=200))
def test_any_text_labelled_json_is_kept_or_normalized_never_an_exception(text):
    assert isinstance(content.normalized(text, "application/json; charset=utf-8", None), str)
