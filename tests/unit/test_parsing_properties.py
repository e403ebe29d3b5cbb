"""Property-based tests of everything parsed from outside: CTS messages, S3 event
notifications and job documents.

Whatever the input (arbitrary bytes, deep nesting, huge or odd unicode fields, wrong types,
path characters in ids), parsing returns a value or raises its one documented error type.
"""

from __future__ import annotations

import json
import unicodedata
import urllib.parse
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.convert import structure
from contract.identifiers import InvalidIdentifier, check_bucket, check_object_key, check_segment
from contract.spec import EventRef, ImporterRef, JobSpec
from contract.store import SpecStore
from dispatcher import events, s3events
from dispatcher.cts import CtsJob, parse_job
from dispatcher.errors import EventRejected

LIMIT = 65536
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=50))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)
# Ids as they might come: plain, path-like, control characters, surrogates, very long.
odd_ids = st.one_of(
    st.text(max_size=40), st.sampled_from(["", ".", "..", "../../etc/passwd", "a/b", "%2e%2e",
                                           "a\\x00b", "\\ud800", "job 1", "ü"]),
    st.text(min_size=290, max_size=3000), st.integers(), st.none(), st.lists(st.text()))
states = st.one_of(st.sampled_from([s.value for s in events.JobState]), st.text(max_size=20),
                   st.integers())
times = st.one_of(st.just("2026-11-20T10:15:00.123+00:00"), st.just("2026-11-20T10:15:00"),
                  st.text(max_size=30), st.integers(), st.none())
messages = st.fixed_dictionaries(
    {}, optional={"job_id": odd_ids, "state": states, "time": times, "trans_id": odd_ids,
                  "extra": json_values})


def _parse_event(value: bytes):
    try:
        event = events.parse(value, LIMIT)
    except events.MalformedMessage as error:
        assert str(error) and "\n" not in str(error)[:200]
        return None
    assert isinstance(event, events.CtsEvent)
    # What parses is safe to use as a CTS URL segment and an S3 key segment.
    SpecStore("s3://bucket/prefix", client=None).spec_uri(event.job_id, event.trans_id)
    return event


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_parse_or_are_malformed(value):
    _parse_event(value)


@SETTINGS
@given(messages)
def test_message_shaped_json_parses_or_is_malformed(message):
    event = _parse_event(json.dumps(message).encode())
    if event is not None:
        assert event.job_id == message["job_id"] and event.trans_id == message["trans_id"]


@SETTINGS
@given(messages)
def test_the_usual_message_s_shortcut_builds_what_the_converter_builds(message):
    # events._usual builds the common message's event without the converter; it must
    # never accept what the converter refuses, nor build anything else.
    usual = events._usual(message)
    try:
        converted = structure(message, events.CtsEvent, events._converter)
    except ValueError:
        assert usual is None
        return
    assert usual is None or usual == converted


@SETTINGS
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", "{\"a\":"]))
def test_deep_nesting_is_malformed_not_a_crash(depth, opener):
    closer = "]" if opener == "[" else "}"
    value = (opener * depth + closer * depth).encode()
    _parse_event(value[:LIMIT])


@SETTINGS
@given(json_values)
def test_any_json_value_parses_or_is_malformed(value):
    _parse_event(json.dumps(value).encode())


def test_the_issue_s_inputs_are_malformed_with_the_field_named():
    deep = b"[" * 30000 + b"]" * 30000
    for value, reason in [
        (deep, "nested too deeply"),
        (json.dumps({"job_id": "j", "state": "complete", "time": "2026-11-20T10:15:00Z",
                     "trans_id": ".."}).encode(), "trans_id: '..' is not a usable path segment"),
        (json.dumps({"job_id": "j", "state": "complete", "time": "2026-11-20T10:15:00Z",
                     "trans_id": "t" * 3000}).encode(), "trans_id: too long"),
        (json.dumps({"job_id": "", "state": "complete", "time": "2026-11-20T10:15:00Z",
                     "trans_id": "t"}).encode(), "job_id: must not be empty"),
    ]:
        try:
            events.parse(value, 100_000)
        except events.MalformedMessage as error:
            assert reason in str(error)
        else:
            raise AssertionError(f"parsed: {value[:60]!r}")



# parse() reads the usual message with orjson and leaves the rest to parse_reference()
# (json): both must decide every message alike, the event or the reason.
_reference = events.contained(events.parse_reference)


def _decided(parse, value: bytes):
    try:
        return parse(value, LIMIT)
    except events.MalformedMessage as error:
        return str(error)


def _same_as_reference(value: bytes) -> None:
    assert _decided(events.parse, value) == _decided(_reference, value)


@SETTINGS
@given(st.binary(max_size=2000))
def test_parse_decides_arbitrary_bytes_as_the_reference_does(value):
    _same_as_reference(value)


@SETTINGS
@given(messages, st.booleans())
def test_parse_decides_message_shaped_json_as_the_reference_does(message, ascii_only):
    # NaN and Infinity (json writes them), huge integers, lone surrogates, raw UTF-8.
    _same_as_reference(json.dumps(message, ensure_ascii=ascii_only).encode(
        "utf-8", "surrogatepass"))


@SETTINGS
@given(st.text(max_size=300))
def test_parse_decides_arbitrary_text_as_the_reference_does(text):
    _same_as_reference(text.encode("utf-8", "surrogatepass"))


def test_parse_decides_what_json_and_orjson_read_differently_as_the_reference_does():
    usual = ('"job_id": "j1", "state": "created", "time": "2026-11-20T10:15:00Z", '
             '"trans_id": "t1"')
    for text in [
        "{" + usual + ', "extra": NaN}', "{" + usual + ', "extra": -Infinity}',
        "{" + usual + ', "extra": 1e400}', "{" + usual + ', "extra": ' + "9" * 40 + "}",
        "{" + usual + ', "extra": ' + "9" * 5000 + "}",
        "{" + usual + ', "job_id": "j2"}', '{"job_id": 1, ' + usual + "}",
        '{"job_id": ' + "9" * 40 + ', "state": "created", "time": "2026-11-20T10:15:00Z", '
        '"trans_id": "t1"}',
        '{"job_id": "\\ud800", "state": "created", "time": "2026-11-20T10:15:00Z", '
        '"trans_id": "t1"}',
        "\ufeff{" + usual + "}", "{" + usual + "} ", " {" + usual + "}\n", "{" + usual + "}x",
        *("{" + usual + ', "extra": ' + "[" * depth + "]" * depth + "}"
          for depth in (400, 499, 500, 900, 990, 1000, 1023, 1024, 1030, 5000)),
    ]:
        _same_as_reference(text.encode("utf-8", "surrogatepass"))
    _same_as_reference(b'{' + usual.encode() + b', "job_id": "j\xff"}')  # not UTF-8


# -- S3 event notifications -------------------------------------------------------------------

# Keys as they might come: encoded or not, '+', stray and invalid percent escapes, NUL.
odd_keys = st.one_of(st.text(max_size=60), st.sampled_from(
    ["raw/a+b.tsv", "raw/%C3%BC.tsv", "%", "%zz", "%FF", "%00", "raw/%2F..%2F", "+", "%C3"]),
    st.text(min_size=1000, max_size=1500), st.integers(), st.none(), st.lists(st.text()))
odd_names = st.one_of(st.sampled_from(["s3:ObjectCreated:Put", "ObjectCreated:Copy",
                                       "s3:ObjectRemoved:Delete", "ObjectCreated", ""]),
                      st.text(max_size=30), st.integers(), st.none())
s3_records = st.fixed_dictionaries({}, optional={
    "eventName": odd_names,
    "eventTime": times,
    "eventSource": st.one_of(st.just("minio:s3"), json_values),
    "userIdentity": st.one_of(st.fixed_dictionaries({"principalId": odd_ids}), json_values),
    "s3": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "bucket": st.one_of(json_values, st.fixed_dictionaries(
            {"name": st.one_of(st.just("cdm-dataplane"), odd_ids)})),
        "object": st.one_of(json_values, st.fixed_dictionaries({}, optional={
            "key": odd_keys, "size": st.one_of(st.integers(), json_values),
            "eTag": odd_ids, "versionId": odd_ids, "sequencer": odd_ids}))})),
    "extra": json_values})
notifications = st.fixed_dictionaries({}, optional={
    "EventName": json_values, "Key": json_values, "Event": json_values,
    "Records": st.one_of(st.lists(st.one_of(s3_records, json_values), max_size=4),
                         json_values)})


def _parse_notification(value: bytes) -> tuple | None:
    try:
        parsed = s3events.parse(value, LIMIT)
    except events.MalformedMessage as error:
        assert str(error) and "\n" not in str(error)[:200]
        return None
    assert isinstance(parsed, tuple) and parsed
    for item in parsed:
        assert isinstance(item, (s3events.ObjectCreated, s3events.OtherEvent,
                                 events.MalformedMessage)), item
        if isinstance(item, events.MalformedMessage):
            assert str(item)
        if isinstance(item, s3events.ObjectCreated):
            # What parses names a real object and gives a usable spec location.
            check_bucket("bucket", item.bucket)
            check_object_key("key", item.key)
            assert item.size >= 0 and item.time.utcoffset() is not None
            SpecStore("s3://bucket/prefix", client=None).spec_uri(item.job_id, item.trans_id)
    return parsed


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_are_notifications_or_malformed(value):
    _parse_notification(value)


@SETTINGS
@given(json_values)
def test_any_json_value_is_a_notification_or_malformed(value):
    _parse_notification(json.dumps(value).encode())


@SETTINGS
@given(notifications)
def test_notification_shaped_json_parses_record_by_record(message):
    parsed = _parse_notification(json.dumps(message).encode())
    if parsed is not None and "Records" in message:
        assert len(parsed) == len(message["Records"])


@SETTINGS
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", "{\"a\":"]))
def test_deeply_nested_notifications_are_malformed_not_a_crash(depth, opener):
    closer = "]" if opener == "[" else "}"
    inner = opener * depth + closer * depth
    value = ('{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": ' + inner + "}]}")
    _parse_notification(value.encode()[:LIMIT])


# -- job documents --------------------------------------------------------------------------

GOOD = {
    "id": "job1", "user": "alice", "state": "complete",
    "image": {"name": "ghcr.io/kbasetest/cdm_checkm2", "digest": "sha256:abc"},
    "job_input": {"params": {"args": ["--threads", "4"]}},
    "input_file_count": 1, "output_file_count": 1,
    "outputs": [{"file": "bucket/out/quality_report.tsv", "crc64nvme": "4ekt2WB1KO4="}],
    "transition_times": [{"state": "complete", "time": "2026-01-01T01:00:00Z"}],
}
IMPORTER = ImporterRef(name="checkm2", py_module="importers.checkm2")
EVENT = EventRef(topic="t", partition=0, offset=0, trans_id="x",
                 time=datetime.fromisoformat("2026-01-01T01:00:00+00:00"))


def _parse_job(doc, job_id="job1"):
    try:
        job = parse_job(doc, job_id)
        spec = job.to_spec(IMPORTER, EVENT)
    except EventRejected as error:
        assert str(error)
        return None
    assert isinstance(job, CtsJob) and isinstance(spec, JobSpec)
    return spec


@SETTINGS
@given(json_values)
def test_any_document_parses_or_is_rejected(doc):
    _parse_job(doc)


@SETTINGS
@given(st.sampled_from(sorted(GOOD)), st.one_of(json_values, odd_ids))
def test_a_document_with_one_field_replaced_parses_or_is_rejected(field, value):
    _parse_job({**GOOD, field: value})


@SETTINGS
@given(st.integers(min_value=1, max_value=50_000))
def test_deeply_nested_arguments_are_rejected_or_kept(depth):
    args = ["--x"]
    nested: object = "leaf"
    for _ in range(depth):
        nested = [nested]
    args.append(nested)
    _parse_job({**GOOD, "job_input": {"params": {"args": args}}})


def test_the_good_document_parses():
    assert _parse_job(GOOD) is not None


# -- identifiers ------------------------------------------------------------------------------

def test_identifier_checks():
    for good in ["abc", "a/b", "ü-ß", "x" * 100, "job%2F1", "a..b", "..."]:
        assert check_segment("job_id", good) == good
    for bad, reason in [("", "empty"), (".", "usable"), ("..", "usable"),
                        ("a\x00b", "control"), ("a\nb", "control"), ("\ud800", "surrogate"),
                        ("x" * 301, "too long"), ("é" * 60, "too long"), (3, "expected a string")]:
        try:
            check_segment("job_id", bad)
        except InvalidIdentifier as error:
            assert reason in str(error) and str(error).startswith("job_id: ")
        else:
            raise AssertionError(f"accepted {bad!r}")


@settings(max_examples=500)
@given(st.text(max_size=120) | st.text(st.characters(max_codepoint=127), max_size=120))
def test_a_segment_is_accepted_exactly_by_its_definition(value):
    """The fast paths (printable ASCII, short ASCII) agree with the rules read literally:
    non-empty, not . or .., no control character or surrogate, at most 300 bytes encoded."""
    usable = (value not in ("", ".", "..")
              and all(unicodedata.category(c) not in ("Cc", "Cs") for c in value)
              and len(urllib.parse.quote(value, safe="")) <= 300)
    try:
        check_segment("job_id", value)
    except InvalidIdentifier:
        assert not usable, value
    else:
        assert usable, value



@settings(max_examples=500)
@given(st.one_of(odd_ids, st.text(st.characters(max_codepoint=127), max_size=120)))
def test_a_cts_event_takes_exactly_the_ids_check_segment_takes(value):
    """The event's validator tests the usual id itself first: it must accept and refuse
    what check_segment does, with its reason."""
    def decided(make):
        try:
            return make()
        except (InvalidIdentifier, TypeError) as error:
            return f"{type(error).__name__}: {error}"
    event = decided(lambda: events.CtsEvent(
        job_id=value, state=events.JobState.CREATED,
        time=datetime(2026, 11, 20, tzinfo=timezone.utc), trans_id="t1"))
    checked = decided(lambda: check_segment("job_id", value))
    assert (event.job_id if isinstance(event, events.CtsEvent) else event) == checked

def test_segments_at_the_length_bound():
    assert check_segment("job_id", "x" * 300) == "x" * 300
    assert check_segment("job_id", "/" * 100) == "/" * 100  # 300 bytes once encoded
    for bad in ("/" * 101, "x" * 301, " " * 101):
        try:
            check_segment("job_id", bad)
        except InvalidIdentifier as error:
            assert "too long" in str(error)
        else:
            raise AssertionError(f"accepted {bad!r}")
