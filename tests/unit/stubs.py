"""In-memory stubs of the dispatcher's own interfaces, for unit tests of its core.

dramatiq tests its worker against a ``StubBroker``; these stubs do the same for
:class:`dispatcher.loop.Dispatcher`, :class:`dispatcher.intake.Intake` and
:class:`dispatcher.ledger.AttemptLedger`, which run unchanged on top of them:

=====================  =================================================================
stub                   stands in for
=====================  =================================================================
:class:`Clock`         :mod:`dispatcher.clock` (monotonic and wall time, moved by hand)
:class:`Consumer`      the ``KafkaConsumer`` calls of :class:`~dispatcher.intake.Intake`:
                       subscribe with a rebalance listener, poll, pause/resume, commit,
                       end offsets; rebalances and failing commits on demand
:class:`Producer`      the DLQ's ``KafkaProducer`` (send returning a pending send)
:class:`Cts`           :class:`dispatcher.cts.CtsClient` (job documents, admin meta)
:class:`Store`         :class:`contract.store.SpecStore`: the real class, its S3 calls
                       answered from a dict with S3's semantics (ETags, conditional puts
                       that fail with 412, 404 for a missing key, outages as 503s); its
                       ``client`` answers the S3 source's ``head_object``
:class:`Launcher`      a launcher whose runners end when the test says, writing their
                       result file as the real runner does
=====================  =================================================================

How to write a core test::

    core = Core()                         # a Dispatcher wired to fresh stubs
    core.announce("job1")                 # a completed CTS job, on partition 0
    core.turn()                           # one turn of the real loop: the runner starts
    core.runner("job1").end(0)            # it imports and exits 0
    core.turn()                           # recorded, finished, offset committed
    assert core.consumer.committed_offset(core.partition(0)) == 1

``Core(**settings)`` overrides :class:`dispatcher.config.Config` fields (``retry`` has no
jitter by default, so a backoff is exact); ``core.clock.advance(seconds)`` moves time; an
idle poll moves it by the poll's timeout, as waiting for records would. A second
``Core(store=core.store, ...)`` is another dispatcher (another owner) on the same specs.
Nothing here sleeps or opens a socket: a test runs in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
from botocore.exceptions import ClientError
from kafka import TopicPartition

from common.faults import Fault, ServiceFailure
from common.s3 import S3Uri
from contract import result as results
from contract.store import SpecStore
from dispatcher.config import Config, CtsSettings, KafkaSettings, RetrySettings
from dispatcher.cts import JobNotFound
from dispatcher.launchers import LaunchError, LaunchRequest, RunnerExit
from dispatcher.loop import Dispatcher
from dispatcher.metrics import Health, Metrics
from registry.registry import ImporterEntry, ImporterSettings, Registry

TOPIC = "cts-jobs"
DLQ_TOPIC = "cts-jobs-dlq"
IMAGE = "ghcr.io/kbase/stub_tool"
SPECS = "s3://specs/csep"


# -- time ---------------------------------------------------------------------------------

class Clock:
    """Monotonic and wall time that move only when told (``advance``, ``sleep``)."""

    def __init__(self, start: datetime = datetime(2026, 12, 1, tzinfo=timezone.utc)) -> None:
        self._monotonic = 1000.0
        self._now = start
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self._monotonic

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._now += timedelta(seconds=seconds)


# -- Kafka --------------------------------------------------------------------------------

@attrs.frozen
class Record:
    """The fields of a ``ConsumerRecord`` the dispatcher reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: list[tuple[str, bytes]] = attrs.field(factory=list)


class Consumer:
    """A consumer group of one: every partition of the subscribed topics is assigned to
    it. Partitions hold records appended by :meth:`append`; a rebalance asked for with
    :meth:`revoke`, :meth:`assign` or :meth:`lose` runs inside the next poll, as
    kafka-python runs its listener. ``commit_error`` makes every commit raise it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.log: dict[TopicPartition, list[Record]] = {}
        self.topics: list[str] = []
        self.listener: Any = None
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.highwaters: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        #: Every acknowledged commit, in order: {partition: offset}.
        self.commits: list[dict[TopicPartition, int]] = []
        self.commit_error: Exception | None = None
        self.closed = False
        self._rebalances: list[Callable[[], None]] = []
        #: Called at the start of each poll (e.g. to stop the dispatcher at a point).
        self.on_poll: list[Callable[[], None]] = []

    # the test's side

    def append(self, topic: str, value: bytes | None, partition: int = 0,
               key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
               ) -> Record:
        tp = TopicPartition(topic, partition)
        if tp not in self.log and topic in self.topics:
            self._assigned.add(tp)  # a partition new to a subscribed topic is this one's
        log = self.log.setdefault(tp, [])
        record = Record(topic, partition, len(log), key, value,
                        int(self.clock.now().timestamp() * 1000), headers or [])
        log.append(record)
        return record

    def committed_offset(self, partition: TopicPartition) -> int | None:
        return self.committed.get(partition)

    def revoke(self, *partitions: TopicPartition) -> None:
        """At the next poll, take ``partitions`` away (a cooperative rebalance)."""
        def run() -> None:
            self.listener.on_partitions_revoked(set(partitions))
            self._assigned -= set(partitions)
            self._paused -= set(partitions)
        self._rebalances.append(run)

    def assign(self, *partitions: TopicPartition) -> None:
        """At the next poll, give ``partitions`` (back), reading from their committed
        offsets."""
        def run() -> None:
            for tp in partitions:
                self.positions[tp] = self.committed.get(tp, 0)
            self._assigned |= set(partitions)
            self.listener.on_partitions_assigned(set(partitions))
        self._rebalances.append(run)

    def lose(self, *partitions: TopicPartition) -> None:
        """At the next poll, the group dropped this consumer's ``partitions``."""
        def run() -> None:
            self._assigned -= set(partitions)
            self._paused -= set(partitions)
            self.listener.on_partitions_lost(set(partitions))
        self._rebalances.append(run)

    # the consumer's API, as Intake calls it

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.topics, self.listener = list(topics), listener
        assigned = {tp for tp in self.log if tp.topic in self.topics} - self._assigned
        self._assigned |= assigned
        if listener is not None and assigned:
            listener.on_partitions_assigned(assigned)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None
             ) -> dict[TopicPartition, list[Record]]:
        for hook in self.on_poll:
            hook()
        rebalances, self._rebalances = self._rebalances, []
        for rebalance in rebalances:
            rebalance()
        left = max_records or 1 << 30
        batch: dict[TopicPartition, list[Record]] = {}
        for tp in sorted(self._assigned - self._paused):
            start = self.positions.get(tp, self.committed.get(tp, 0))
            records = self.log.get(tp, [])[start:start + left]
            self.highwaters[tp] = len(self.log.get(tp, []))
            if records:
                batch[tp] = records
                self.positions[tp] = start + len(records)
                left -= len(records)
        if not batch:
            self.clock.advance(timeout_ms / 1000)  # waited for records that did not come
        return batch

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        moved = {tp: meta.offset for tp, meta in offsets.items()}
        self.committed.update(moved)
        self.commits.append(moved)

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int | None = None
                    ) -> dict[TopicPartition, int]:
        return {tp: len(self.log.get(tp, [])) for tp in partitions}

    def highwater(self, partition: TopicPartition) -> int | None:
        """The partition's end as of its last poll (None before one), as a fetch
        response tells kafka-python's consumer."""
        return self.highwaters.get(partition)

    def position(self, partition: TopicPartition, timeout_ms: int | None = None) -> int:
        return self.positions.get(partition, self.committed.get(partition, 0))

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        self.closed = True


class PendingSend:
    """A ``FutureRecordMetadata`` as the DLQ reads it: ``is_done`` and ``get``."""

    def __init__(self, error: Exception | None = None, done: bool = True) -> None:
        self.error = error
        self.is_done = done

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


@attrs.frozen
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str | None:
        return next((v.decode() for n, v in self.headers if n == name), None)

    @property
    def json(self) -> Any:
        return json.loads(self.value)


class Producer:
    """The DLQ's producer: every send is acknowledged at once, unless ``refuse`` holds
    an exception the pending send raises (Kafka refused the record)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.refuse: Exception | None = None

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> PendingSend:
        self.sent.append(Sent(topic, key, value or b"", list(headers or [])))
        return PendingSend(self.refuse)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


# -- the CTS ------------------------------------------------------------------------------

def job_document(job_id: str, image: str = IMAGE, user: str = "alice",
                 completed: datetime = datetime(2026, 11, 30, tzinfo=timezone.utc)) -> dict:
    """A CTS job document of a completed job with one output."""
    return {
        "id": job_id, "user": user, "state": "complete",
        "image": {"name": image, "digest": "sha256:" + "0" * 64, "tag": "1.0"},
        "job_input": {"params": {"args": []}}, "input_file_count": 1, "output_file_count": 1,
        "outputs": [{"file": f"bucket/{job_id}/out.tsv", "crc64nvme": "4ekt2WB1KO4="}],
        "transition_times": [{"state": "complete", "time": completed.isoformat()}],
    }


class Cts:
    """The CTS admin API: ``jobs`` by id; ``meta`` records each ``set_meta`` call;
    ``down`` (a reason) makes every call an infrastructure failure of service ``cts``."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.meta: list[tuple[str, str]] = []
        self.calls = 0
        self.down: str | None = None

    def get_job(self, job_id: str) -> dict:
        self._call()
        if job_id not in self.jobs:
            raise JobNotFound("cts", Fault.EVENT, f"CTS has no job {job_id!r} (appcode 40040)",
                              "JobNotFound")
        return self.jobs[job_id]

    def set_meta(self, job_id: str, key: str) -> None:
        self._call()
        self.meta.append((job_id, key))

    def _call(self) -> None:
        self.calls += 1
        if self.down is not None:
            raise ServiceFailure("cts", Fault.INFRASTRUCTURE, f"CTS: {self.down}", "HTTP 503")


# -- S3: the spec store -------------------------------------------------------------------

def _s3_error(code: str, status: int, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class Objects:
    """The S3 client calls of :class:`~dispatcher.sources.S3Source` for objects whose
    CRC64/NVME S3 stores: ``head_object``. ``objects[(bucket, key)]`` is (size, eTag)."""

    CRC = "4ekt2WB1KO4="

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[int, str]] = {}

    def head_object(self, Bucket: str, Key: str, **options: str) -> dict:  # noqa: N803
        if (Bucket, Key) not in self.objects:
            raise _s3_error("404", 404, "HeadObject")
        size, etag = self.objects[(Bucket, Key)]
        return {"ETag": f'"{etag}"', "ContentLength": size, "ChecksumCRC64NVME": self.CRC}


class Store(SpecStore):
    """The real :class:`~contract.store.SpecStore` over a dict instead of an S3 client.

    Only its S3 calls are replaced, with S3's answers: an object's ETag is the quoted MD5
    of its bytes; ``IfNoneMatch="*"`` on an existing key and ``IfMatch`` with another
    ETag fail with 412 PreconditionFailed; a missing key reads as 404 NoSuchKey.
    ``down`` (an S3 error code) makes every call fail with it, as a 503. Its ``client``
    (which the S3 source reads objects with) is an :class:`Objects`."""

    def __init__(self, base: str = SPECS) -> None:
        super().__init__(base, client=Objects())
        self.objects: dict[str, tuple[str, str]] = {}
        self.down: str | None = None

    def text(self, uri: str) -> str:
        return self.objects[uri][0]

    def read_text(self, uri: str) -> str:
        return self.read_text_and_etag(uri)[0]

    def read_text_and_etag(self, uri: str) -> tuple[str, str]:
        self._available("GetObject")
        if uri not in self.objects:
            raise _s3_error("NoSuchKey", 404, "GetObject")
        return self.objects[uri]

    def write_text(self, uri: str, text: str, **conditions: str) -> None:
        self._available("PutObject")
        S3Uri.parse(uri)
        current = self.objects.get(uri)
        if conditions.get("IfNoneMatch") == "*" and current is not None:
            raise _s3_error("PreconditionFailed", 412, "PutObject")
        if "IfMatch" in conditions:
            if current is None:
                raise _s3_error("NoSuchKey", 404, "PutObject")
            if current[1] != conditions["IfMatch"]:
                raise _s3_error("PreconditionFailed", 412, "PutObject")
        self.objects[uri] = (text, f'"{hashlib.md5(text.encode()).hexdigest()}"')

    def _keys(self, prefix: str) -> list[str]:
        self._available("ListObjectsV2")
        start = f"s3://{self.bucket}/"
        return [uri[len(start):] for uri in self.objects
                if uri.startswith(start) and uri[len(start):].startswith(prefix)]

    def _available(self, operation: str) -> None:
        if self.down is not None:
            raise _s3_error(self.down, 503, operation)


# -- runners ------------------------------------------------------------------------------

class Runner:
    """One launched runner: it runs until the test calls :meth:`end`."""

    def __init__(self, request: LaunchRequest, store: Store, clock: Clock) -> None:
        self.request = request
        self.store = store
        self.clock = clock
        self.started_at = clock.now()
        self.exit: RunnerExit | None = None
        self.killed = False

    @property
    def result_uri(self) -> str:
        return str(S3Uri.parse(self.request.spec_uri).sibling(self.request.result_name))

    def end(self, exit_code: int | None, *, status: results.Status | None = None,
            message: str | None = None, service: str | None = None,
            write_result: bool = True, infrastructure: str | None = None) -> None:
        """End the runner with ``exit_code``. Like the real runner it first writes its
        result file (``status`` default: the exit code's), unless ``write_result`` is
        false (it crashed first) or it died by a signal (``exit_code`` None)."""
        if write_result and exit_code is not None:
            status = status or results.status_for_exit_code(exit_code)
            result = results.RunResult(
                spec_uri=self.request.spec_uri, job_id=self.request.job_id, status=status,
                exit_code=exit_code, started_at=self.started_at, ended_at=self.clock.now(),
                message=message, service=service)
            self.store.write_text_if_absent(self.result_uri, results.to_yaml(result))
        self.exit = RunnerExit(exit_code, signal=None if exit_code is not None else 9,
                               stderr_tail=message or "", infrastructure=infrastructure)

    # the handle's API

    def poll(self) -> RunnerExit | None:
        return self.exit

    def kill(self) -> None:
        self.killed = True
        if self.exit is None:
            self.exit = RunnerExit(None, signal=9)

    @property
    def running(self) -> bool:
        return self.exit is None


class Launcher:
    """Launches :class:`Runner` stubs; ``refuse`` (a reason) makes launches fail."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.runners: list[Runner] = []
        self.refuse: str | None = None
        self.closed = False

    def launch(self, request: LaunchRequest) -> Runner:
        if self.refuse is not None:
            raise LaunchError(self.refuse)
        runner = Runner(request, self.store, self.clock)
        self.runners.append(runner)
        return runner

    def close(self) -> None:
        self.closed = True


# -- a dispatcher on stubs ----------------------------------------------------------------

def importer(name: str = "stub", image: str = IMAGE, **settings: Any) -> ImporterEntry:
    """A registered CTS importer of ``image`` (``settings``: its ImporterSettings)."""
    return ImporterEntry(name=name, py_module=f"importers.{name}", image=image,
                         importer_meta={}, settings=ImporterSettings(**settings),
                         source=Path(f"{name}.yaml"))


def config(**overrides: Any) -> Config:
    """A dispatcher configuration for stubs; retries without jitter unless overridden."""
    settings: dict[str, Any] = {
        "kafka": KafkaSettings(bootstrap_servers="stub:9092", topic=TOPIC, dlq_topic=DLQ_TOPIC),
        "cts": CtsSettings(url="http://cts.invalid"), "spec_store": SPECS,
        "retry": RetrySettings(max_attempts=3, initial_backoff_seconds=5.0,
                               max_backoff_seconds=300.0, jitter_seconds=0.0)}
    return Config(**{**settings, **overrides})


class Core:
    """A real :class:`~dispatcher.loop.Dispatcher` on fresh stubs (or on the given
    ``store``/``clock``/``consumer``, shared with another Core), subscribed and ready
    to turn. ``settings`` are :class:`~dispatcher.config.Config` fields."""

    def __init__(self, *, importers: Iterable[ImporterEntry] = (), store: Store | None = None,
                 clock: Clock | None = None, cts: Cts | None = None,
                 consumer: Consumer | None = None, owner: str = "dispatcher-a",
                 subscribe: bool = True, **settings: Any) -> None:
        self.clock = clock or Clock()
        self.store = store or Store()
        self.cts = cts or Cts()
        self.consumer = consumer or Consumer(self.clock)
        self.producer = Producer()
        self.launcher = Launcher(self.store, self.clock)
        self.metrics = Metrics()
        self.config = config(**settings)
        self.registry = Registry(tuple(importers) or (importer(),))
        self.dispatcher = Dispatcher(
            self.config, consumer=self.consumer, producer=self.producer, cts=self.cts,
            store=self.store, registry=self.registry, launcher=self.launcher,
            metrics=self.metrics, health=Health(), clock=self.clock, owner=owner)
        if subscribe:
            self.dispatcher.intake.subscribe()

    # events

    def announce(self, job_id: str, *, trans_id: str = "t1", partition: int = 0,
                 state: str = "complete", image: str = IMAGE,
                 headers: list[tuple[str, bytes]] | None = None) -> Record:
        """Put a CTS job-state message on the topic (and the job in the CTS stub)."""
        self.cts.jobs.setdefault(job_id, job_document(job_id, image))
        value = json.dumps({"job_id": job_id, "state": state, "trans_id": trans_id,
                            "time": self.clock.now().isoformat()}).encode()
        return self.consumer.append(TOPIC, value, partition, key=job_id.encode(),
                                    headers=headers)

    @staticmethod
    def partition(number: int = 0) -> TopicPartition:
        return TopicPartition(TOPIC, number)

    # the loop

    def turn(self, times: int = 1) -> None:
        """Turn the real loop ``times`` times (a poll, the steps, the commits)."""
        for _ in range(times):
            self.dispatcher._turn(draining=False)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass, then turn once."""
        self.clock.advance(seconds)
        self.turn()

    # what happened

    def runners(self, job_id: str) -> list[Runner]:
        return [r for r in self.launcher.runners if r.request.job_id == job_id]

    def runner(self, job_id: str) -> Runner:
        """The latest runner of ``job_id``."""
        launched = self.runners(job_id)
        assert launched, f"no runner of {job_id} was launched"
        return launched[-1]

    def dead_letters(self) -> list[Sent]:
        return [s for s in self.producer.sent if s.topic == DLQ_TOPIC]

    def spec_uri(self, job_id: str, trans_id: str = "t1") -> str:
        return self.store.spec_uri(job_id, trans_id)

    def results(self, job_id: str, trans_id: str = "t1") -> list[results.RunResult]:
        return self.store.results(self.spec_uri(job_id, trans_id))

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def stage(self, job_id: str) -> str | None:
        """The stage the dispatcher holds ``job_id``'s event in (None: not held)."""
        return next((w.stage.value for w in self.dispatcher.work.values()
                     if getattr(w.event, "job_id", None) == job_id), None)
