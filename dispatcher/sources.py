"""The dispatcher's event sources: what a Kafka record means and which import it asks for.

=========  ==============================  ================================================
source     records (topic)                 an event asks for
=========  ==============================  ================================================
``cts``    CTS job-state messages          the importer of the job's image, on the job's
           (``kafka.topic``)               outputs; CTS meta records the outcome
``s3``     S3 event notifications          the importer routing the object's bucket and
           (``kafka.s3_topic``)            key, on the object as it is in S3 now
=========  ==============================  ================================================

A record read back from the DLQ topic (a replay) is read as the source its dead letter
recorded (header ``__csep.errors.source``), else as its topic's.

Each source implements :class:`EventSource`, the interface the loop calls.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import attrs

from common.crc64nvme import ObjectChanged, ObjectChecksum
from common.faults import Fault, ServiceFailure, classify, one_line, s3_error_code
from contract.spec import (
    EventRef,
    ImporterRef,
    JobInfo,
    JobSpec,
    Output,
    S3Object,
    namespace_prefix,
    plain_user,
)
from dispatcher import cts as cts_api
from dispatcher import events, s3events
from dispatcher.errors import EventRejected
from registry.filters import JobFacts

log = logging.getLogger("dispatcher")

#: How long one step may spend reading an object to checksum it before the loop moves on
#: (the read resumes at the next turn).
CHECKSUM_SLICE_SECONDS = 1.0


@attrs.frozen
class Planned:
    """Run ``entry`` on ``spec``."""

    entry: Any  # registry.ImporterEntry
    spec: JobSpec


@attrs.frozen
class NoImport:
    """Nothing to import; acknowledged as a no-op. ``reason`` is logged."""

    reason: str


@attrs.frozen
class Pending:
    """Not decided yet: call ``plan`` again with ``state`` on a later turn."""

    state: Any


EventT = TypeVar("EventT", contravariant=True)


@runtime_checkable
class EventSource(Protocol[EventT]):
    """What a Kafka record means, and which import its event asks for.

    ``EventT`` is the source's actionable event (:class:`~dispatcher.events.CtsEvent`,
    :class:`~dispatcher.s3events.ObjectCreated`): what ``plan``, ``started``,
    ``finished`` and ``prepare_services`` take.
    """

    #: The source's name, recorded in specs and dead letters (``cts``, ``s3``).
    kind: ClassVar[str]
    #: The services ``finished`` calls (and the DLQ's): while one's breaker is open,
    #: finishing waits, and its success is what closes it.
    finish_services: ClassVar[tuple[str, ...]]

    def parse(self, value: bytes | None, max_bytes: int) -> Sequence[object]:
        """The record's events: one for a CTS message, one per record of an S3
        notification, each an ``EventT``, another kind of event the loop acknowledges
        (an S3 ``OtherEvent``) or the ``MalformedMessage`` of that record. Raises
        ``MalformedMessage`` for an unusable message."""
        ...

    def record_value(self, value: bytes, index: int) -> bytes:
        """The part of the record ``value`` that is its ``index``-th event (what a dead
        letter of that event carries)."""
        ...

    def prepare_services(self, event: EventT) -> tuple[str, ...]:
        """The services ``plan`` calls for ``event``: while one's breaker is open, the
        event waits, and its success is what closes it."""
        ...

    def plan(self, event: EventT, ref: EventRef, pending: Any = None
             ) -> Planned | NoImport | Pending:
        """The import the event asks for (:class:`Planned`), none (:class:`NoImport`:
        an acknowledged no-op, with the reason), or not decided yet (:class:`Pending`:
        call again with its state on a later turn). Raises ``EventRejected`` (the
        event's fault) or ``ServiceFailure``."""
        ...

    def started(self, event: EventT) -> None:
        """Record that the event's import started (the CTS's admin meta)."""
        ...

    def finished(self, event: EventT, outcome: str) -> None:
        """Record how the event's processing ended (``imported``, ``no_importer``,
        ``dead_lettered``...)."""
        ...


def importer_ref(entry) -> ImporterRef:
    return ImporterRef(name=entry.name, py_module=entry.py_module,
                       importer_meta=entry.importer_meta,
                       executor_cores=entry.settings.executor_cores)


class CtsSource:
    """CTS job-state messages: a completed job is fetched from the CTS and imported by
    the importer of its image."""

    kind: ClassVar[str] = "cts"
    finish_services: ClassVar[tuple[str, ...]] = ("dlq", "cts")
    _META = {"imported": cts_api.META_COMPLETE, "no_importer": cts_api.META_NO_OPERATION,
             "dead_lettered": cts_api.META_ERROR}

    def __init__(self, cts: cts_api.CtsClient, registry) -> None:
        self.cts = cts
        self.registry = registry

    def parse(self, value: bytes | None, max_bytes: int) -> tuple[events.CtsEvent]:
        return (events.parse(value, max_bytes),)

    def prepare_services(self, event: events.CtsEvent) -> tuple[str, ...]:
        return ("cts", "s3")

    def record_value(self, value: bytes, index: int) -> bytes:
        return value

    def plan(self, event: events.CtsEvent, ref: EventRef, pending: Any = None
             ) -> Planned | NoImport:
        job = cts_api.parse_job(self.cts.get_job(event.job_id), event.job_id)
        entry = self.registry.for_image(job.image.name)
        if entry is None:
            return NoImport(f"no importer for image {job.image.name}")
        spec = job.to_spec(importer_ref(entry), ref)
        if (refusal := entry.refusal(spec)) is not None:
            return NoImport(f"importer {entry.name} does not take the job: {refusal}")
        return Planned(entry, spec)

    def started(self, event: events.CtsEvent) -> None:
        self.cts.set_meta(event.job_id, cts_api.META_START)

    def finished(self, event: events.CtsEvent, outcome: str) -> None:
        if outcome not in self._META:
            return
        try:
            self.cts.set_meta(event.job_id, self._META[outcome])
        except ServiceFailure as failure:
            if failure.fault is not Fault.EVENT:
                raise
            # The CTS refuses meta for this job (e.g. no such job): nothing to record.


def route(registry, event: s3events.ObjectCreated) -> tuple[Any, str] | NoImport:
    """The one importer taking the object of ``event``, and the job's user: the route's
    ``s3.user``, else the uploader when a plain user name. :class:`NoImport` when no
    importer routes the object or every routing importer's ``match`` refuses it.
    Raises EventRejected when several importers take it, or there is no usable user."""
    routed = registry.for_object(event.bucket, event.key)
    if not routed:
        return NoImport(f"no importer routes {event.uri}")
    uploader = event.principal_id if plain_user(event.principal_id) else None
    taking, refusals = [], []
    for entry in routed:
        user = entry.s3.user or uploader
        facts = JobFacts(user=user or event.principal_id or "", image_digest="",
                         outputs=(f"{event.bucket}/{event.key}",), size=event.size)
        refusal = entry.refusal(facts)
        if refusal is None:
            taking.append((entry, user))
        else:
            refusals.append(f"importer {entry.name} does not take the object: {refusal}")
    if not taking:
        return NoImport("; ".join(refusals))
    if len(taking) > 1:
        raise EventRejected(
            f"{event.uri} is taken by {len(taking)} importers, "
            + ", ".join(f"{e.name} ({e.source})" for e, _ in taking)
            + ": make their s3.keys or match conditions exclusive, then replay")
    entry, user = taking[0]
    if user is None:
        raise EventRejected(
            f"{event.uri}: no user for the import: the uploader "
            f"{(event.principal_id or '')[:100]!r} is not a plain user name (letters, "
            f"digits, _) and importer {entry.name} ({entry.source}) sets no s3.user")
    return entry, user


@attrs.define
class _Reading:
    """An object being read to checksum it, and what was decided before."""

    entry: Any
    user: str
    obj: S3Object
    checksum: ObjectChecksum


class S3Source:
    """S3 object-created notifications: the object is routed by bucket and key to an
    importer (:meth:`registry.Registry.for_object` and its ``match``), looked up in S3
    (it must still be the object the event announced) and its CRC64/NVME taken from S3,
    or computed by reading the object when S3 stores none.

    The job's user is the route's ``s3.user`` when the importer sets one, else the
    uploader (``userIdentity.principalId``) when that is a plain user name (letters,
    digits, ``_``): it names the tables' namespace. An object no importer routes, or
    whose importers' ``match`` refuse it, is a no-op; one that several importers take,
    one without a usable user, and one deleted or changed since the event are rejected
    (dead-lettered) with the reason.
    """

    kind: ClassVar[str] = "s3"
    finish_services: ClassVar[tuple[str, ...]] = ("dlq",)

    def __init__(self, client, registry) -> None:
        self.client = client
        self.registry = registry

    def parse(self, value: bytes | None, max_bytes: int) -> tuple[s3events.Parsed, ...]:
        return s3events.parse(value, max_bytes)

    def prepare_services(self, event: s3events.ObjectCreated) -> tuple[str, ...]:
        """S3, for an object some importer takes; none for one that routing alone
        decides (a no-op, a rejection): it neither waits for S3 nor tells S3 is back."""
        try:
            return () if isinstance(route(self.registry, event), NoImport) else ("s3",)
        except EventRejected:
            return ()
        except Exception:  # plan() raises it again, contained to the event
            return ("s3",)

    def record_value(self, value: bytes, index: int) -> bytes:
        return s3events.record_value(value, index)

    def plan(self, event: s3events.ObjectCreated, ref: EventRef,
             pending: _Reading | None = None) -> Planned | NoImport | Pending:
        if pending is None:
            taken = route(self.registry, event)
            if isinstance(taken, NoImport):
                return taken
            entry, user = taken
            obj, stored = self._look_up(event)
            if stored is not None:
                return Planned(entry, self._spec(event, ref, entry, user, obj, stored))
            log.info("%s has no stored CRC64NVME: computing it by reading the object",
                     event.uri)
            pending = _Reading(entry, user, obj, ObjectChecksum(
                self.client, obj.bucket, obj.key, obj.size, obj.etag, obj.version_id))
        crc = self._s3(event, "reading the object for its CRC64NVME",
                       lambda: pending.checksum.advance(CHECKSUM_SLICE_SECONDS))
        if crc is None:
            return Pending(pending)
        return Planned(pending.entry, self._spec(event, ref, pending.entry, pending.user,
                                                 pending.obj, crc))

    def started(self, event: s3events.ObjectCreated) -> None:
        pass

    def finished(self, event: s3events.ObjectCreated, outcome: str) -> None:
        pass

    # -- the steps ----------------------------------------------------------------------

    def _look_up(self, event: s3events.ObjectCreated) -> tuple[S3Object, str | None]:
        """The object as S3 has it now, and its stored CRC64NVME (None: S3 stores none).
        Raises EventRejected when it is gone or no longer the one the event announced."""
        head = self._s3(event, "looking the object up", lambda: self.client.head_object(
            Bucket=event.bucket, Key=event.key, ChecksumMode="ENABLED"))
        etag = (head.get("ETag") or "").strip('"') or None
        size, version = head.get("ContentLength"), head.get("VersionId")
        changes = [f"{what} {before} -> {after}" for what, before, after in (
            ("eTag", event.etag, etag), ("size", event.size, size),
            ("version", event.version_id, version))
            if before is not None and before != after]
        if changes:
            raise EventRejected(f"{event.uri} changed since the event ({', '.join(changes)}); "
                                "a later upload has an event of its own")
        obj = S3Object(bucket=event.bucket, key=event.key, size=size, etag=etag,
                       version_id=version or event.version_id, sequencer=event.sequencer)
        return obj, head.get("ChecksumCRC64NVME")

    def _spec(self, event: s3events.ObjectCreated, ref: EventRef, entry, user: str,
              obj: S3Object, crc: str) -> JobSpec:
        info = JobInfo(
            id=event.job_id, outputs=(Output(obj.file, crc),), image=None, image_digest=None,
            input_file_count=0, output_file_count=1, completion_time=event.time, user=user,
            namespace_prefix=namespace_prefix(user), object=obj)
        return JobSpec(job=info, importer=importer_ref(entry), event=ref)

    def _s3(self, event: s3events.ObjectCreated, what: str, call):
        """``call()``, its failures classified: the object gone or replaced is the
        event's (EventRejected); the rest as :mod:`common.faults` says."""
        try:
            return call()
        except ObjectChanged as error:
            raise EventRejected(f"{event.uri} changed while it was read: {error}") from error
        except Exception as error:
            code = s3_error_code(error)
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchVersion"):
                raise EventRejected(f"{event.uri} does not exist any more: deleted since "
                                    f"the event ({event.event_name} at "
                                    f"{event.time.isoformat()})") from error
            if code in ("412", "PreconditionFailed"):
                raise EventRejected(f"{event.uri} changed while it was read (its eTag is no "
                                    "longer the one looked up)") from error
            name = type(error).__name__ + (f" {code}" if code else "")
            raise ServiceFailure("s3", classify("s3", error),
                                 f"s3: {what} ({event.uri}): {name}: {one_line(error)}",
                                 type(error).__name__) from error


if TYPE_CHECKING:
    # mypy proves that both sources implement the protocol, signatures included.
    def _implements(cts: CtsSource, s3: S3Source) -> None:
        _cts: EventSource[events.CtsEvent] = cts
        _s3: EventSource[s3events.ObjectCreated] = s3
