"""The entry adapter's doors: command-line arguments and Lambda events. Whatever is passed, a
run gets a request it can trust or one line naming the problem (exit 2, an EventError), never a
traceback, never a secret."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.app import events
from shared.core import db as shared_db
from shared.core.errors import EventError


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


def test_an_event_naming_no_job_runs_none_rather_than_all():
    with pytest.raises(EventError, match="event 'jobs' names no job"):
        events.parse_all({"jobs": [], "scheduled_time": "2026-11-21T10:00:00Z"})


@pytest.mark.parametrize("argv", [["--bogus"], ["--time-budget", "abc"], ["--url"]])
def test_arguments_argparse_refuses_are_one_line_too(capsys, argv):
    from functions import scrape as scrape_fn

    with pytest.raises(SystemExit) as exited:
        scrape_fn.main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")



@pytest.mark.parametrize("event, message", [
    ({"Records": ["not an object"]}, "SQS record #1 is not an object"),
    ({"Records": [{"messageId": "m1", "body": "[1, 2]"}]}, "SQS record m1: event must be a JSON object, not list"),
    ({"Records": [{"messageId": "m1", "body": "{not json"}]}, "SQS record m1 has no JSON body"),
    ({"scheduled_time": "yesterday"}, "event 'scheduled_time' is not a time such as 2026-11-21T10:00:00Z"),
    ({"scheduled_time": 17}, "event 'scheduled_time' must be a string, not int"),
    ({"job": "a\x00b"}, "event 'job' holds a NUL"),
    ({"url": "http://x/\x00"}, "event 'url' holds a NUL"),
    ({"url": "http://x/ y"}, "event 'url' holds spaces or control characters"),
    ({"run_key": "k" * 5000}, "event 'run_key' must be 1 to 2048 characters"),
    ({"run_key": "\ud800"}, "event 'run_key' holds a NUL or an unpaired surrogate"),
    ({"name": ["x"]}, "event 'name' must be a string, not list"),
])
def test_bad_events_are_one_line_event_errors(event, message):
    with pytest.raises(EventError) as caught:
        events.parse_all(event)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@given(event=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                          lambda children: st.lists(children, max_size=3)
                          | st.dictionaries(st.sampled_from(["job", "jobs", "url", "name", "run_key", "scheduled_time",
                                                             "time", "detail-type", "Records", "body", "schedule"])
                                            | st.text(max_size=8), children, max_size=4), max_leaves=12))
@settings(max_examples=300, deadline=None)
def test_any_event_parses_or_is_an_event_error(event):
    try:
        requests = events.parse_all(event)
    except EventError as exc:
        assert "\n" not in str(exc)
        return
    for request in requests:
        for value in (request.run_key, request.url, request.name, *(request.jobs or [])):
            assert value is None or shared_db.storable(value) == value

