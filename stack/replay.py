"""Replayable event sets: CTS jobs and their output files, replayed into a running stack.

An event set is a directory::

    SET/
      <name>.json      a CTS job document, as ``GET /admin/jobs/{id}`` answers it
      <name>/<path>    its output files: output ``<job_input.output_dir>/<path>``

Replaying it (:func:`stage` then :func:`publish`) uploads every output file to S3 with
its CRC64/NVME checksum (filled into the document when ``crc64nvme`` is absent, checked
against it when present), registers each job with the CTS double (``POST
/_double/jobs``) and publishes one event per job: its last transition (keyed by the job
id; the topic and the DLQ topic are created if missing). Nothing is published unless
every file of the set uploaded and checked out.
:func:`follow` then reports each event once the dispatcher's consumer group has committed
it: dead-lettered (with the DLQ record's reason), imported, no-op (CTS meta
``cse_event_processing_no_operation``: no importer, or its ``match`` refused the job) or
ignored (not a completion: no meta at all).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import requests

from common.convert import converter, structure
from stack.state import StackState

DEFAULT_TOPIC, DEFAULT_DLQ_TOPIC, DEFAULT_GROUP = "cts-jobs", "cts-jobs-dlq", "cdm-spark-events"
_META_OUTCOMES = {"cse_event_processing_complete": "imported",
                  "cse_event_processing_no_operation": "no-op",
                  "cse_event_processing_error": "dead-lettered"}


class EventSetError(ValueError):
    """An unusable event set; the message names the file (and the field)."""


# -- the set ------------------------------------------------------------------------------

@attrs.frozen
class _Output:
    file: str
    crc64nvme: str | None = None


@attrs.frozen
class _Transition:
    state: str
    time: str  # passed on as written
    trans_id: str


@attrs.frozen
class _JobInput:
    output_dir: str | None = None


@attrs.frozen
class _Job:
    """What replaying reads of a job document; the rest is registered as it is."""

    id: str
    transition_times: tuple[_Transition, ...]
    outputs: tuple[_Output, ...] = ()
    job_input: _JobInput = _JobInput()


_converter = converter(forbid_extra_keys=False)


@attrs.frozen
class JobFixture:
    """One job of a set: its document and the local file of each output."""

    source: Path
    doc: dict[str, Any] = attrs.field(repr=False)
    files: tuple[Path, ...]  # one per output, in order

    @property
    def job_id(self) -> str:
        return self.doc["id"]

    def event(self) -> bytes:
        """The CTS message of the job's last transition."""
        last = self.doc["transition_times"][-1]
        return json.dumps({"job_id": self.job_id, "state": last["state"], "time": last["time"],
                           "trans_id": last["trans_id"]}).encode()

    def renamed(self, job_id: str, user: str) -> JobFixture:
        """The same job under another id and user; its outputs move to ``<bucket>/<job_id>``."""
        doc = copy.deepcopy(self.doc)
        old_dir = doc["job_input"]["output_dir"]
        new_dir = f"{old_dir.split('/', 1)[0]}/{job_id}"
        doc["id"], doc["user"], doc["job_input"]["output_dir"] = job_id, user, new_dir
        for output in doc["outputs"]:
            output["file"] = new_dir + output["file"][len(old_dir):]
            output.pop("crc64nvme", None)  # another file name: checked afresh
        return attrs.evolve(self, doc=doc)


def load_set(directory: Path | str) -> list[JobFixture]:
    """Every ``*.json`` job of ``directory``, sorted by file name. Raises
    :class:`EventSetError` naming the file and field of the first problem."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EventSetError(f"{directory}: not a directory")
    fixtures = [_load_job(path) for path in sorted(directory.glob("*.json"))]
    if not fixtures:
        raise EventSetError(f"{directory}: no job documents (*.json)")
    seen: dict[str, Path] = {}
    for fixture in fixtures:
        if fixture.job_id in seen:
            raise EventSetError(f"{fixture.source}: job id {fixture.job_id!r} is also the id "
                                f"of {seen[fixture.job_id]}")
        seen[fixture.job_id] = fixture.source
    return fixtures


def _load_job(path: Path) -> JobFixture:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        job = structure(doc, _Job, _converter)
    except (OSError, UnicodeDecodeError, ValueError) as error:  # StructureError included
        raise EventSetError(f"{path}: {error}") from error
    if not job.transition_times:
        raise EventSetError(f"{path}: transition_times: no transition to announce")
    files = []
    output_dir = (job.job_input.output_dir or "").rstrip("/")
    for index, output in enumerate(job.outputs):
        if not output_dir or not output.file.startswith(output_dir + "/"):
            raise EventSetError(f"{path}: outputs[{index}].file: {output.file!r} is not under "
                                f"job_input.output_dir {job.job_input.output_dir!r}")
        local = path.with_suffix("") / output.file[len(output_dir) + 1:]
        if not local.is_file():
            raise EventSetError(f"{path}: outputs[{index}].file: no local file {local}")
        files.append(local)
    return JobFixture(source=path, doc=doc, files=tuple(files))


# -- replaying it -------------------------------------------------------------------------

@attrs.frozen
class Published:
    """Where an event of the set went."""

    job_id: str
    topic: str
    partition: int
    offset: int
    meta_before: int  # the job's CTS meta updates before this event


def stage(state: StackState, fixtures: list[JobFixture]) -> list[JobFixture]:
    """Upload every output (creating its bucket), check or fill in its checksum, then
    register each job with the CTS double; return the jobs as registered. Raises
    :class:`EventSetError` (a checksum differs) before registering anything."""
    s3 = state.s3_client()
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    staged = []
    for fixture in fixtures:
        doc = copy.deepcopy(fixture.doc)
        for index, (output, local) in enumerate(zip(doc["outputs"], fixture.files, strict=True)):
            bucket, key = output["file"].split("/", 1)
            if bucket not in buckets:
                s3.create_bucket(Bucket=bucket)
                buckets.add(bucket)
            put = s3.put_object(Bucket=bucket, Key=key, Body=local.read_bytes(),
                                ChecksumAlgorithm="CRC64NVME")
            actual = put["ChecksumCRC64NVME"]
            if output.get("crc64nvme") not in (None, actual):
                raise EventSetError(
                    f"{fixture.source}: outputs[{index}].crc64nvme: {output['crc64nvme']!r}, "
                    f"but {local} has {actual!r}")
            output["crc64nvme"] = actual
        staged.append(attrs.evolve(fixture, doc=doc))
    for fixture in staged:
        _cts(state, "POST", "/_double/jobs", json=fixture.doc)
    return staged


def ensure_topics(state: StackState, partitions: dict[str, int]) -> list[str]:
    """Create those of the topics that do not exist (a bare ``python -m stack up`` has
    none, and its broker does not create them on first use); return their names."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=state.kafka_bootstrap)
    try:
        missing = sorted(set(partitions) - set(admin.list_topics()))
        if missing:
            admin.create_topics([NewTopic(name, partitions[name], 1) for name in missing])
            admin.wait_for_topics(missing, timeout_ms=30000)
        return missing
    finally:
        admin.close()


def publish(state: StackState, fixtures: list[JobFixture], topic: str) -> list[Published]:
    """Publish each job's event on ``topic``, in order; return where each went."""
    from kafka import KafkaProducer

    before = _meta_counts(state)
    producer = KafkaProducer(bootstrap_servers=state.kafka_bootstrap, acks="all",
                             max_block_ms=30000)
    try:
        sent = [producer.send(topic, key=f.job_id.encode(), value=f.event()) for f in fixtures]
        return [Published(f.job_id, m.topic, m.partition, m.offset, before.get(f.job_id, 0))
                for f, m in zip(fixtures, (s.get(timeout=30) for s in sent), strict=True)]
    finally:
        producer.close()


@attrs.frozen
class Report:
    """What became of one published event."""

    event: Published
    outcome: str  # imported, no-op, ignored, dead-lettered, or not committed
    reason: str = ""

    def line(self) -> str:
        where = f"{self.event.topic}/{self.event.partition}@{self.event.offset}"
        return (f"{self.event.job_id}  {where}  {self.outcome}"
                + (f": {self.reason}" if self.reason else ""))


def follow(state: StackState, published: list[Published], *, group: str, dlq_topic: str,
           timeout: float, alive: Callable[[], bool] = lambda: True) -> Iterator[Report]:
    """Yield a :class:`Report` per event as soon as ``group`` has committed past it; at
    ``timeout`` (or when ``alive()`` turns false) the rest are "not committed"."""
    from kafka import KafkaConsumer, TopicPartition

    waiting = list(published)
    offsets = KafkaConsumer(bootstrap_servers=state.kafka_bootstrap, group_id=group,
                            enable_auto_commit=False)
    letters = _DeadLetters(state, dlq_topic)
    deadline = time.monotonic() + timeout
    try:
        while waiting and time.monotonic() < deadline and alive():
            partitions = {TopicPartition(e.topic, e.partition) for e in waiting}
            committed = {p: offsets.committed(p) or 0 for p in partitions}
            done = [e for e in waiting
                    if committed[TopicPartition(e.topic, e.partition)] > e.offset]
            if done:
                meta = _meta_updates(state)
                for event in done:
                    waiting.remove(event)
                    yield _report(event, letters.reason(event), meta.get(event.job_id, []))
            else:
                time.sleep(0.5)
        for event in waiting:
            yield Report(event, "not committed", f"within {timeout:.0f}s" if alive()
                         else "the dispatcher exited")
    finally:
        offsets.close()
        letters.close()


def _report(event: Published, dead_letter: str | None, updates: list[str]) -> Report:
    if dead_letter is not None:
        return Report(event, "dead-lettered", dead_letter)
    outcomes = [_META_OUTCOMES[key] for key in updates[event.meta_before:]
                if key in _META_OUTCOMES]
    return Report(event, outcomes[-1] if outcomes else "ignored")


class _DeadLetters:
    """The DLQ topic read from its start: the reason recorded for each original event."""

    def __init__(self, state: StackState, topic: str) -> None:
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(bootstrap_servers=state.kafka_bootstrap,
                                       enable_auto_commit=False, auto_offset_reset="earliest")
        self._topic = topic
        self._reasons: dict[tuple[str, int, int], str] = {}

    def reason(self, event: Published) -> str | None:
        """Read up to the topic's current end (a dead letter is acknowledged before its
        event is committed), then look the event up."""
        from kafka import TopicPartition

        partitions = [TopicPartition(self._topic, p)
                      for p in self._consumer.partitions_for_topic(self._topic) or ()]
        if partitions:
            self._consumer.assign(partitions)
            ends = self._consumer.end_offsets(partitions)
            deadline = time.monotonic() + 30
            while (any(self._consumer.position(p) < ends[p] for p in partitions)
                   and time.monotonic() < deadline):
                for records in self._consumer.poll(timeout_ms=500).values():
                    for record in records:
                        self._add(record)
        return self._reasons.get((event.topic, event.partition, event.offset))

    def _add(self, record) -> None:
        headers = {name: value.decode("utf-8", "replace") for name, value in record.headers}
        try:
            origin = (headers["__connect.errors.topic"],
                      int(headers["__connect.errors.partition"]),
                      int(headers["__connect.errors.offset"]))
        except (KeyError, ValueError):
            return  # not a dead letter of this contract
        self._reasons[origin] = headers.get("__connect.errors.exception.message", "")

    def close(self) -> None:
        self._consumer.close()


def _cts(state: StackState, method: str, path: str, **kwargs: Any) -> Any:
    response = requests.request(method, state.cts_url + path, timeout=10, **kwargs)
    response.raise_for_status()
    return response.json()


def _meta_updates(state: StackState) -> dict[str, list[str]]:
    """Per job, the meta keys the CTS double was asked to set, in order."""
    updates: dict[str, list[str]] = {}
    for update in _cts(state, "GET", "/_double/meta")["updates"]:
        updates.setdefault(update["job_id"], []).extend(update["set_fields"])
    return updates


def _meta_counts(state: StackState) -> dict[str, int]:
    return {job: len(keys) for job, keys in _meta_updates(state).items()}


def replay(state: StackState, directory: Path | str, *, topic: str = DEFAULT_TOPIC,
           dlq_topic: str = DEFAULT_DLQ_TOPIC, group: str = DEFAULT_GROUP,
           timeout: float = 600.0, out: Callable[[str], None] = print,
           alive: Callable[[], bool] = lambda: True) -> list[Report]:
    """Replay the set in ``directory`` and report every event's outcome through ``out``,
    one line each, as it is committed; return the reports."""
    fixtures = stage(state, load_set(directory))
    for created in ensure_topics(state, {topic: 3, dlq_topic: 1}):
        out(f"created topic {created}")
    published = publish(state, fixtures, topic)
    for event in published:
        out(f"published {event.job_id} at {event.topic}/{event.partition}@{event.offset}")
    reports = []
    for report in follow(state, published, group=group, dlq_topic=dlq_topic, timeout=timeout,
                         alive=alive):
        out(report.line())
        reports.append(report)
    return reports
