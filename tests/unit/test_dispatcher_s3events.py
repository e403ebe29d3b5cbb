"""S3 event notifications as MinIO, Ceph RGW and AWS send them: parsed record by record."""

from __future__ import annotations

import copy
import json
from datetime import datetime

import pytest

from dispatcher.events import MalformedMessage
from dispatcher.s3events import ObjectCreated, OtherEvent, parse, record_value

# What MinIO publishes to Kafka for `mc cp "my file ü.tsv" local/cdm-dataplane/raw/`.
RECORD = {
    "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
    "eventTime": "2026-11-20T10:15:00.123Z", "eventName": "s3:ObjectCreated:Put",
    "userIdentity": {"principalId": "alice"},
    "requestParameters": {"principalId": "alice", "region": "", "sourceIPAddress": "10.0.0.5"},
    "responseElements": {"x-amz-id-2": "dd9025bab4ad464b0", "x-amz-request-id": "17A9C0",
                         "x-minio-deployment-id": "ab12", "x-minio-origin-endpoint": "http://s3"},
    "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
           "bucket": {"name": "cdm-dataplane", "ownerIdentity": {"principalId": "alice"},
                      "arn": "arn:aws:s3:::cdm-dataplane"},
           "object": {"key": "raw/my+file+%C3%BC.tsv", "size": 1024,
                      "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                      "contentType": "text/tab-separated-values",
                      "userMetadata": {"content-type": "text/tab-separated-values"},
                      "sequencer": "17A9C0D2E3F4A5B6"}},
    "source": {"host": "10.0.0.5", "port": "", "userAgent": "MinIO (linux; amd64) mc"},
}
MESSAGE = {"EventName": "s3:ObjectCreated:Put", "Key": "cdm-dataplane/raw/my file ü.tsv",
           "Records": [RECORD]}


def encoded(message: dict) -> bytes:
    return json.dumps(message).encode()


def with_record(**changes) -> dict:
    record = copy.deepcopy(RECORD)
    for path, value in changes.items():
        target = record
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return {**MESSAGE, "Records": [record]}


def test_a_minio_put_is_an_object_created_event_with_the_key_decoded():
    [event] = parse(encoded(MESSAGE), 65536)
    assert event == ObjectCreated(
        event_name="s3:ObjectCreated:Put",
        time=datetime.fromisoformat("2026-11-20T10:15:00.123+00:00"), bucket="cdm-dataplane",
        key="raw/my file ü.tsv", size=1024, etag="d41d8cd98f00b204e9800998ecf8427e",
        sequencer="17A9C0D2E3F4A5B6", principal_id="alice", event_source="minio:s3")
    assert event.actionable and event.trans_id == "17A9C0D2E3F4A5B6"
    assert event.job_id.startswith("s3-") and len(event.job_id) == 35


def test_an_aws_record_has_no_s3_prefix_and_may_carry_a_version():
    message = with_record(eventName="ObjectCreated:CompleteMultipartUpload",
                          eventSource="aws:s3", userIdentity__principalId="AWS:AIDAEXAMPLE",
                          s3__object__versionId="3HL4kqtJlcpXroDTDmJ", s3__object__eTag='"x-2"')
    del message["EventName"], message["Key"]
    [event] = parse(encoded(message), 65536)
    assert (event.version_id, event.etag, event.principal_id) == (
        "3HL4kqtJlcpXroDTDmJ", "x-2", "AWS:AIDAEXAMPLE")


def test_the_job_id_follows_bucket_key_and_upload_only():
    [first] = parse(encoded(MESSAGE), 65536)
    [again] = parse(encoded(with_record(eventTime="2026-11-21T00:00:00Z",
                                        source={"host": "elsewhere"})), 65536)
    [other_upload] = parse(encoded(with_record(s3__object__sequencer="17A9C0D2E3F4A5B7")), 65536)
    [other_key] = parse(encoded(with_record(s3__object__key="raw/other.tsv")), 65536)
    assert first.job_id == again.job_id
    assert len({first.job_id, other_upload.job_id, other_key.job_id}) == 3


def test_without_a_sequencer_the_version_then_the_etag_tell_uploads_apart():
    [versioned] = parse(encoded(with_record(s3__object__sequencer=None,
                                            s3__object__versionId="v1")), 65536)
    [plain] = parse(encoded(with_record(s3__object__sequencer=None)), 65536)
    assert versioned.trans_id == "v1"
    assert plain.trans_id == "d41d8cd98f00b204e9800998ecf8427e"


@pytest.mark.parametrize("name", ["s3:ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated",
                                  "s3:ObjectAccessed:Get", "s3:Replication:OperationFailed"])
def test_other_event_names_are_acknowledged_without_their_details(name):
    # A removal carries no size: it is not needed to know there is nothing to import.
    [event] = parse(encoded(with_record(eventName=name, s3__object__size=None)), 65536)
    assert event == OtherEvent(name) and not event.actionable
    assert event.reason == f"S3 event {name!r} is not an object creation"


def test_aws_test_event_is_acknowledged():
    value = encoded({"Service": "Amazon S3", "Event": "s3:TestEvent",
                     "Time": "2026-11-20T10:15:00.000Z", "Bucket": "cdm-dataplane"})
    assert parse(value, 65536) == (OtherEvent("s3:TestEvent"),)


def test_several_records_are_several_events_and_a_bad_one_spoils_only_itself():
    removed = with_record(eventName="s3:ObjectRemoved:Delete")["Records"][0]
    bad = with_record(s3__object__key="raw/%00.tsv")["Records"][0]
    value = encoded({**MESSAGE, "Records": [RECORD, removed, bad]})
    created, other, malformed = parse(value, 65536)
    assert isinstance(created, ObjectCreated) and isinstance(other, OtherEvent)
    assert isinstance(malformed, MalformedMessage)
    assert "Records[2].s3.object.key (decoded): character 4 is a control character" in str(
        malformed)
    narrowed = json.loads(record_value(value, 2))
    assert narrowed == {**MESSAGE, "Records": [bad]}


@pytest.mark.parametrize(("message", "reason"), [
    (with_record(s3__object__key=""), "Records[0].s3.object.key (decoded): must not be empty"),
    (with_record(s3__object__key="raw/%FF.tsv"), "does not decode to UTF-8"),
    (with_record(s3__object__key="a" * 1025), "longer than S3's 1024 bytes"),
    (with_record(s3__object__key=7), "Records[0].s3.object.key: invalid value for type"),
    (with_record(s3__object__size=None), "Records[0].s3.object.size: an object-created event "
                                         "needs the object's size, got None"),
    (with_record(s3__object__size=-1), "size"),
    (with_record(s3__object__size=True), "Records[0].s3.object.size"),
    (with_record(s3__bucket__name="Not_A_Bucket"), "Records[0].s3.bucket.name: 'Not_A_Bucket' "
                                                   "is not a valid S3 bucket name"),
    (with_record(s3__bucket=None), "Records[0].s3.bucket: required field missing"),
    (with_record(eventTime="yesterday"), "Records[0].eventTime"),
    (with_record(eventTime="2026-11-20T10:15:00"), "Records[0].eventTime: expected a time "
                                                   "with a UTC offset"),
    (with_record(eventName=3), "Records[0].eventName: expected a string"),
    (with_record(s3__object__sequencer=None, s3__object__eTag=None),
     "needs a sequencer, versionId or eTag"),
    (with_record(s3__object__sequencer=".."), "Records[0].s3.object.sequencer: '..' is not a "
                                              "usable path segment"),
])
def test_a_malformed_record_says_which_field(message, reason):
    [problem] = parse(encoded(message), 65536)
    assert isinstance(problem, MalformedMessage)
    assert reason in str(problem)


@pytest.mark.parametrize(("value", "reason"), [
    (b"\xff", "not UTF-8"),
    (b"{", "not JSON"),
    (b"[]", "must be a JSON object"),
    (None, "no value"),
    (encoded({"job_id": "a", "state": "complete"}), "not an S3 event notification: no Records"),
    (encoded({"Records": []}), "Records: expected a non-empty list"),
    (encoded({"Records": {"0": RECORD}}), "Records: expected a non-empty list"),
    (encoded({"Records": [{"eventName": "s3:ObjectRemoved:Delete"}] * 101}),
     "101 records, at most 100"),
    (b"{" + b" " * 70000 + b"}", "oversized"),
])
def test_a_malformed_message_is_refused_whole(value, reason):
    with pytest.raises(MalformedMessage, match=reason):
        parse(value, 65536)
