"""S3 event notifications from Kafka: the AWS S3 event message structure, as MinIO, Ceph
RGW and AWS (through a bridge) publish it.

A message is UTF-8 JSON with a list of ``Records`` (MinIO adds ``EventName`` and ``Key``
beside it; they are not used: the records are what counts)::

    {"EventName": "s3:ObjectCreated:Put", "Key": "bucket/raw/a+b.tsv",
     "Records": [{"eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
                  "eventTime": "2026-11-20T10:15:00.123Z", "eventName": "s3:ObjectCreated:Put",
                  "userIdentity": {"principalId": "alice"}, ...,
                  "s3": {"bucket": {"name": "bucket", ...},
                         "object": {"key": "raw/a+b.tsv", "size": 1024, "eTag": "...",
                                    "versionId": "...", "sequencer": "17A9..."}}}]}

Each record is parsed on its own: a message of several records is several events, and one
malformed record does not spoil the others. A record whose ``eventName`` (with or without
the ``s3:`` prefix) is not ``ObjectCreated:*`` is an :class:`OtherEvent`, acknowledged
without an import; so is AWS's ``s3:TestEvent`` message. An object-created record needs
the bucket, the key (URL-encoded, ``+`` for a space: decoded here and then checked with
:func:`contract.identifiers.check_object_key`), the size and the event time, and at
least one of ``sequencer``, ``versionId``, ``eTag`` to tell this upload from others.
Fields beyond these are ignored (a replayed DLQ message carries ``error_dlq``).
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from datetime import datetime
from typing import Any

import attrs

from common.convert import StructureError, converter, structure
from contract.identifiers import check_bucket, check_object_key, check_segment
from dispatcher.events import MalformedMessage, contained, json_object

#: More records in one message than this make it malformed (each becomes an event).
MAX_RECORDS = 100
CREATED = "ObjectCreated:"


@attrs.frozen
class ObjectCreated:
    """An object was written (put, posted, copied, completed multipart)."""

    event_name: str
    time: datetime
    bucket: str
    key: str                         # decoded, as stored
    size: int
    etag: str | None = None          # without quotes
    version_id: str | None = None
    sequencer: str | None = None
    principal_id: str | None = None
    event_source: str | None = None  # aws:s3, minio:s3, ceph:s3...

    actionable = True

    @property
    def trans_id(self) -> str:
        """What tells this upload of the object from another: the sequencer, else the
        version id, else the eTag (a second upload of the same bytes is then the same
        event; importing it again would change nothing)."""
        return self.sequencer or self.version_id or self.etag or ""

    @property
    def job_id(self) -> str:
        """``s3-`` and 32 hex digits of the SHA-256 of bucket, key and :attr:`trans_id`
        (newline-separated): one path segment, the same for every copy of this event."""
        digest = hashlib.sha256("\n".join((self.bucket, self.key, self.trans_id)).encode())
        return "s3-" + digest.hexdigest()[:32]

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@attrs.frozen
class OtherEvent:
    """A notification that is not an object creation (a removal, a test event...)."""

    event_name: str

    actionable = False
    job_id = None

    @property
    def reason(self) -> str:
        return f"S3 event {self.event_name[:100]!r} is not an object creation"


Parsed = ObjectCreated | OtherEvent | MalformedMessage


# -- the wire format, field names as in the JSON (so errors name the JSON's fields) --------

@attrs.frozen
class _Bucket:
    name: str


@attrs.frozen
class _Object:
    key: str
    size: int | None = None
    eTag: str | None = None  # noqa: N815
    versionId: str | None = None  # noqa: N815
    sequencer: str | None = None


@attrs.frozen
class _S3:
    bucket: _Bucket
    object: _Object


@attrs.frozen
class _Identity:
    principalId: str | None = None  # noqa: N815


@attrs.frozen
class _Record:
    eventName: str  # noqa: N815
    eventTime: datetime  # noqa: N815
    s3: _S3
    eventSource: str | None = None  # noqa: N815
    userIdentity: _Identity | None = None  # noqa: N815


_converter = converter(forbid_extra_keys=False)


@contained
def parse(value: bytes | None, max_bytes: int) -> tuple[Parsed, ...]:
    """The records of a Kafka record value, each an :class:`ObjectCreated`, an
    :class:`OtherEvent` or the :class:`MalformedMessage` saying what is wrong with it.
    Raises :class:`MalformedMessage` with the reason, and nothing else, when the message
    as a whole is unusable, whatever the bytes."""
    data = json_object(value, max_bytes)
    if "Records" not in data:
        if data.get("Event") == "s3:TestEvent":  # AWS's check of a new notification setup
            return (OtherEvent("s3:TestEvent"),)
        raise MalformedMessage("message is not an S3 event notification: no Records")
    records = data["Records"]
    if not isinstance(records, list) or not records:
        raise MalformedMessage("Records: expected a non-empty list of event records")
    if len(records) > MAX_RECORDS:
        raise MalformedMessage(f"Records: {len(records)} records, at most {MAX_RECORDS} "
                               "per message")
    return tuple(_record(raw, index) for index, raw in enumerate(records))


def _record(raw: Any, index: int) -> Parsed:
    where = f"Records[{index}]"
    try:
        return _created(raw, where)
    except MalformedMessage as error:
        return error
    except Exception as error:  # contained to this record
        return MalformedMessage(f"{where} cannot be parsed: {type(error).__name__}: "
                                f"{str(error)[:200]}")


def _created(raw: Any, where: str) -> ObjectCreated | OtherEvent:
    if not isinstance(raw, dict):
        raise MalformedMessage(f"{where}: expected an object, got {type(raw).__name__}")
    name = raw.get("eventName")
    if not isinstance(name, str):
        raise MalformedMessage(f"{where}.eventName: expected a string")
    if not name.removeprefix("s3:").startswith(CREATED):
        return OtherEvent(name)
    try:
        record = structure(raw, _Record, _converter)
    except StructureError as error:
        parts = "; ".join(f"{where}.{part}" for part in str(error).split("; "))
        raise MalformedMessage(f"{where}: not an S3 event record: {parts}") from error
    obj = record.s3.object
    if obj.size is None or obj.size < 0:
        raise MalformedMessage(f"{where}.s3.object.size: an object-created event needs the "
                               f"object's size, got {obj.size!r}")
    try:
        key = urllib.parse.unquote_plus(obj.key, errors="strict")
    except UnicodeDecodeError as error:
        raise MalformedMessage(f"{where}.s3.object.key: {obj.key[:100]!r} does not decode "
                               f"to UTF-8 ({error.reason})") from error
    try:
        check_bucket(f"{where}.s3.bucket.name", record.s3.bucket.name)
        check_object_key(f"{where}.s3.object.key (decoded)", key)
    except ValueError as error:
        raise MalformedMessage(str(error)) from error
    event = ObjectCreated(
        event_name=name, time=record.eventTime, bucket=record.s3.bucket.name, key=key,
        size=obj.size, etag=(obj.eTag or "").strip('"') or None,
        version_id=obj.versionId or None, sequencer=obj.sequencer or None,
        principal_id=record.userIdentity.principalId if record.userIdentity else None,
        event_source=record.eventSource)
    if not event.trans_id:
        raise MalformedMessage(f"{where}.s3.object: needs a sequencer, versionId or eTag "
                               "to tell this upload from another")
    field = ("sequencer" if event.sequencer else "versionId" if event.version_id
             else "eTag")
    try:
        check_segment(f"{where}.s3.object.{field}", event.trans_id)
    except ValueError as error:
        raise MalformedMessage(str(error)) from error
    return event


def record_value(value: bytes, index: int) -> bytes:
    """The message ``value`` narrowed to its record ``index`` (the envelope's other
    fields kept): what a dead letter of that one record carries, so that a replay of it
    redoes that record only."""
    data = json.loads(value)
    data["Records"] = [data["Records"][index]]
    return json.dumps(data).encode("utf-8")
