"""What notifies (notify_on, notify_if): a change is stored and shown either way, notifies only
when its diff has lines of that kind, and its result line says why it did not."""

import json

import pytest
from werkzeug import Response

from functions import scrape as scrape_fn


@pytest.fixture
def agenda(httpserver):
    state = {"items": ["budget", "parks"], "hooks": []}

    def hook(request):
        state["hooks"].append(json.loads(request.get_data()))
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    httpserver.expect_request("/agenda").respond_with_handler(
        lambda r: Response("<ul>" + "".join(f"<li>{i}</li>" for i in state["items"]) + "</ul>",
                           content_type="text/html"))
    state["url"], state["hook"] = httpserver.url_for("/agenda"), f"json://127.0.0.1:{httpserver.port}/hook"
    return state


def test_notify_on_added_is_silent_on_a_removal_and_notifies_an_addition_once(database_url, agenda, jobs_file,
                                                                               capsys):
    jobs_file(f'[[scrape]]\nname = "agenda"\nurl = "{agenda["url"]}"\nnotify = ["{agenda["hook"]}"]\n'
              'notify_on = "added"\nselect = "ul"\n')
    assert scrape_fn.main([]) == 0
    agenda["items"] = ["budget"]  # a removal
    assert scrape_fn.main([]) == 0
    agenda["items"] = ["budget", "new playground"]  # an addition
    assert scrape_fn.main([]) == 0
    assert scrape_fn.main([]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "agenda: new", "agenda: changed (not notified: only removals)", "agenda: changed", "agenda: unchanged"]
    (hook,) = agenda["hooks"]
    assert "+new playground" in hook["message"] and "-" + "parks" not in hook["message"]


def test_notify_if_notifies_only_when_an_added_line_matches(database_url, agenda, jobs_file, capsys):
    jobs_file(f'[[scrape]]\nname = "agenda"\nurl = "{agenda["url"]}"\nnotify = ["{agenda["hook"]}"]\n'
              'notify_if = "(?i)budget"\nselect = "ul"\n')
    assert scrape_fn.main([]) == 0
    agenda["items"] = ["budget", "parks", "library hours"]
    assert scrape_fn.main([]) == 0
    agenda["items"] = ["Budget amendment", "budget", "parks", "library hours"]
    assert scrape_fn.main([]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "agenda: new", "agenda: changed (not notified: no added line matches notify_if)", "agenda: changed"]
    assert [hook["title"] for hook in agenda["hooks"]] == ["agenda changed"]


@pytest.mark.parametrize("keys, says", [
    ('notify_on = "sometimes"', "key 'notify_on' must be one of 'any', 'added', 'removed'"),
    ('notify_if = "(a+)+$"', "key 'notify_if': '(a+)+$' repeats a group that itself repeats or branches"),
    ('notify_if = "(unclosed"', "key 'notify_if': '(unclosed' is not a valid regular expression"),
])
def test_a_bad_rule_is_one_line_naming_the_key(database_url, jobs_file, capsys, keys, says):
    path = jobs_file(f'[[scrape]]\nname = "a"\nurl = "http://127.0.0.1:1/"\n{keys}\n')
    assert scrape_fn.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: [[scrape]] job 'a': {says}") and err.count("\n") == 1, err
