import json

import pytest

from dispatcher.events import JobState, MalformedMessage, parse

GOOD = {"job_id": "a1", "state": "complete", "time": "2026-11-20T10:15:00+00:00", "trans_id": "t1"}


def test_parses_a_complete_event_and_ignores_extra_fields():
    event = parse(json.dumps({**GOOD, "error_dlq": "x", "error_dlq_trace": ""}).encode(), 1000)
    assert (event.job_id, event.state, event.trans_id) == ("a1", JobState.COMPLETE, "t1")
    assert event.actionable


def test_other_states_are_not_actionable():
    assert not parse(json.dumps({**GOOD, "state": "error"}).encode(), 1000).actionable


@pytest.mark.parametrize(("value", "reason"), [
    (b"\xff\xfe", "not UTF-8"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (None, "no value"),
    (json.dumps({**GOOD, "job_id": 7}).encode(), "job_id: invalid value for type, expected str"),
    (json.dumps({"state": "complete", "time": "t", "trans_id": "x"}).encode(),
     "job_id: required field missing"),
    (json.dumps({**GOOD, "state": "done"}).encode(), "state"),
    (b"{" + b" " * 2000 + b"}", "oversized"),
])
def test_malformed_messages_say_why(value, reason):
    with pytest.raises(MalformedMessage, match=reason):
        parse(value, 1000)
