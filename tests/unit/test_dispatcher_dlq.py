import json

from dispatcher.dlq import Failure, dead_letter, is_replay


def test_json_value_gets_error_fields_and_connect_style_headers():
    original = {"job_id": "a1", "state": "complete", "time": "t", "trans_id": "x"}
    letter = dead_letter(topic="cts-jobs", partition=2, offset=41, key=b"k",
                         value=json.dumps(original).encode(),
                         failure=Failure("retries exhausted", "RetriesExhausted", "tail",
                                         "s3://b/s/a1/x/spec.yaml", 3, 75))
    value = json.loads(letter.value)
    assert value == {**original, "error_dlq": "retries exhausted", "error_dlq_trace": "tail"}
    assert letter.key == b"k"
    headers = dict(letter.headers)
    assert headers["__connect.errors.topic"] == b"cts-jobs"
    assert headers["__connect.errors.partition"] == b"2"
    assert headers["__connect.errors.offset"] == b"41"
    assert headers["__connect.errors.exception.class.name"] == b"RetriesExhausted"
    assert headers["__connect.errors.exception.message"] == b"retries exhausted"
    assert headers["__csep.errors.spec.uri"] == b"s3://b/s/a1/x/spec.yaml"
    assert headers["__csep.errors.attempts"] == b"3"
    assert headers["__csep.errors.exit.code"] == b"75"
    assert is_replay(letter.headers)


def test_a_value_that_is_not_a_json_object_is_carried_as_it_was():
    for raw in (b"\xff\x00binary", b"[1, 2]", b"not json"):
        letter = dead_letter(topic="t", partition=0, offset=0, key=None, value=raw,
                             failure=Failure("bad", "MalformedMessage"))
        assert letter.value == raw
        assert "__csep.errors.spec.uri" not in dict(letter.headers)


def test_replay_detection():
    assert not is_replay(None)
    assert not is_replay([("other", b"x")])
