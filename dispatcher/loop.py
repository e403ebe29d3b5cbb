"""The dispatcher's loop: from a CTS event on Kafka to a committed offset.

One thread turns the loop. Each turn it polls Kafka (so the group never evicts it, even
while a runner works for hours), takes new events in, moves every event it holds one step
forward, and commits per partition up to the first unfinished event. An event moves
through these stages, each step idempotent so any of them may be retried:

    PREPARE   fetch the job from the CTS, find its importer, write the spec to S3,
              count the attempts already recorded there, mark processing start on the CTS
    QUEUED    wait for a runner slot (global and per importer), or for a retry's backoff
    RUNNING   the runner works; on exit: record the attempt, decide done / retry / DLQ
    FINISH    make the outcome durable: CTS meta, DLQ record acknowledged
    (done)    the offset may be committed

Infrastructure failures (CTS, S3, Kafka) park the event and retry the step after a
backoff; intake pauses meanwhile; past the budget the loop stops with exit status 69.
"""

from __future__ import annotations

import enum
import logging
import time
from datetime import datetime, timezone
from typing import Any

import attrs
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from dispatcher import cts as cts_api
from dispatcher import dlq, events
from dispatcher.config import Config
from dispatcher.errors import EventRejected, InfrastructureError, s3_failures
from dispatcher.launchers import LaunchError, LaunchRequest, RunnerExit, RunnerHandle
from dispatcher.metrics import Health, Metrics
from dispatcher.offsets import OffsetTracker
from dispatcher.retry import RetryPolicy, Verdict, verdict
from contract import result as results
from contract.spec import EventRef, ImporterRef
from contract.store import result_ended_at

log = logging.getLogger("dispatcher")

EXIT_OK = 0
EXIT_INFRASTRUCTURE = 69  # sysexits EX_UNAVAILABLE: a service stayed down past the budget
_INFRA_BACKOFF = RetryPolicy(max_attempts=1 << 30, max_elapsed_seconds=float("inf"),
                             initial_backoff_seconds=1.0, max_backoff_seconds=30.0,
                             jitter_seconds=1.0)


class Stage(enum.Enum):
    PREPARE = "prepare"
    QUEUED = "queued"
    RUNNING = "running"
    FINISH = "finish"
    DONE = "done"


_DRAINED = (Stage.RUNNING, Stage.FINISH)  # what still moves during a shutdown


class Outcome(enum.StrEnum):
    IMPORTED = "imported"
    IGNORED = "ignored"            # a state other than complete
    NO_IMPORTER = "no_importer"    # no importer registered for the image
    DEAD_LETTERED = "dead_lettered"


@attrs.define
class Work:
    """One event taken in and not yet finished."""

    record: Any                               # kafka ConsumerRecord
    stage: Stage = Stage.PREPARE
    event: events.CtsEvent | None = None
    not_before: float = 0.0                   # monotonic time of the next step
    infra_failures: int = 0
    spec_uri: str | None = None
    importer: Any = None                      # registry.ImporterEntry
    policy: RetryPolicy | None = None
    attempts: int = 0                         # attempts recorded in S3 so far
    attempts_at_launch: int = 0
    first_started: datetime | None = None
    latest: results.RunResult | None = None   # the latest recorded attempt's result
    handle: RunnerHandle | None = None
    started_at: datetime | None = None
    outcome: Outcome | None = None
    failure: dlq.Failure | None = None

    @property
    def partition(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)

    @property
    def context(self) -> dict[str, Any]:
        """Fields every log line about this event carries."""
        return {"job_id": self.event.job_id if self.event else None,
                "topic": self.record.topic, "partition": self.record.partition,
                "offset": self.record.offset, "attempt": self.attempts or None,
                "spec_uri": self.spec_uri}

    def conclude(self, outcome: Outcome, failure: dlq.Failure | None = None) -> None:
        self.outcome, self.failure, self.stage = outcome, failure, Stage.FINISH


class Dispatcher:
    """Consumes ``config.kafka.topic`` until :meth:`stop` or a persistent infrastructure
    failure; :meth:`run` returns the process exit status."""

    def __init__(self, config: Config, *, consumer, producer, cts: cts_api.CtsClient,
                 store, registry, launcher, metrics: Metrics, health: Health) -> None:
        self.config = config
        self.consumer = consumer
        self.dead_letters = dlq.DeadLetterQueue(producer, config.kafka.dlq_topic)
        self.cts = cts
        self.store = store
        self.registry = registry
        self.launcher = launcher
        self.metrics = metrics
        self.health = health
        self.offsets = OffsetTracker()
        self.work: dict[tuple[TopicPartition, int], Work] = {}
        self.default_policy = RetryPolicy(**attrs.asdict(config.retry))
        self._stopping = False
        self._exit_status = EXIT_OK
        self._failing_since: float | None = None
        self._paused = False
        self._last_lag = 0.0

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        self.consumer.subscribe([self.config.kafka.topic], listener=_Rebalance(self))
        log.info("dispatcher started", extra={"topic": self.config.kafka.topic,
                                               "group_id": self.config.kafka.group_id})
        while not self._stopping:
            self._turn(draining=False)
        return self._drain()

    def stop(self) -> None:
        """Stop intake and drain (safe to call from a signal handler)."""
        self._stopping = True

    def _turn(self, *, draining: bool) -> None:
        free = self.config.max_buffered_events - len(self.work)
        intake = not draining and free > 0 and self._failing_since is None
        self._set_paused(not intake)
        batch = self.consumer.poll(timeout_ms=200 if self.work else 500,
                                   max_records=max(free, 1))
        for records in batch.values():
            for record in records:
                self._intake(record)
        now = time.monotonic()
        for work in list(self.work.values()):
            if work.not_before <= now and (not draining or work.stage in _DRAINED):
                self._advance(work)
        self._commit()
        self._observe()

    def _intake(self, record) -> None:
        partition = TopicPartition(record.topic, record.partition)
        if self.offsets.seen(partition, record.offset):
            return  # redelivered after a rebalance that gave the partition back
        self.offsets.start(partition, record.offset)
        work = Work(record)
        self.work[(partition, record.offset)] = work
        try:
            work.event = events.parse(record.value, self.config.kafka.max_message_bytes)
        except events.MalformedMessage as error:
            work.conclude(Outcome.DEAD_LETTERED, dlq.Failure(str(error), "MalformedMessage"))
            return
        if not work.event.actionable:
            work.conclude(Outcome.IGNORED)

    def _advance(self, work: Work) -> None:
        """One step of one event; failures decide where it goes next."""
        stage = work.stage
        try:
            if work.stage is Stage.PREPARE:
                self._prepare(work)
            elif work.stage is Stage.QUEUED:
                self._launch(work)
            elif work.stage is Stage.RUNNING:
                self._check_runner(work)
            elif work.stage is Stage.FINISH:
                self._finish(work)
        except InfrastructureError as error:
            self._infrastructure_failed(work, error)
            return
        except EventRejected as error:
            work.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
                str(error), type(error).__name__, spec_uri=work.spec_uri,
                attempts=work.attempts if work.spec_uri else None))
        if work.stage is not stage:  # a step went through: its services answered
            self._infrastructure_ok(work)
        if work.stage is Stage.FINISH:
            self._advance(work)

    # -- the steps ----------------------------------------------------------------------

    def _prepare(self, work: Work) -> None:
        job = cts_api.parse_job(self.cts.get_job(work.event.job_id))
        entry = self.registry.for_image(job.image.name)
        if entry is None:
            log.info("no importer for image %s", job.image.name, extra=work.context)
            return work.conclude(Outcome.NO_IMPORTER)
        spec = job.to_spec(
            ImporterRef(name=entry.name, py_module=entry.py_module,
                        importer_meta=entry.importer_meta,
                        executor_cores=entry.settings.executor_cores),
            EventRef(topic=work.record.topic, partition=work.record.partition,
                     offset=work.record.offset, trans_id=work.event.trans_id,
                     time=work.event.time))
        with s3_failures("writing the spec"):
            work.spec_uri = self.store.put_spec(spec)
        work.importer = entry
        work.policy = self.default_policy.overridden(max_attempts=entry.settings.max_attempts)
        self._count_attempts(work)
        if work.latest is not None and work.latest.status is results.Status.SUCCEEDED:
            # Imported, but the commit was lost (a crash, a rebalance).
            return work.conclude(Outcome.IMPORTED)
        self.cts.set_meta(work.event.job_id, cts_api.META_START)
        work.stage = Stage.QUEUED
        if work.attempts and self._next_delay(work) is None:
            self._exhausted(work, last_exit=None)

    def _launch(self, work: Work) -> None:
        if not self._runner_slot_free(work.importer):
            return
        request = LaunchRequest(
            spec_uri=work.spec_uri, job_id=work.event.job_id, importer=work.importer.name,
            attempt=work.attempts + 1, timeout_seconds=work.importer.settings.timeout_seconds,
            executor_cores=work.importer.settings.executor_cores)
        try:
            work.handle = self.launcher.launch(request)
        except LaunchError as error:
            raise InfrastructureError(f"launching a runner: {error}", "launcher") from error
        work.started_at = datetime.now(timezone.utc)
        work.attempts_at_launch = work.attempts
        work.stage = Stage.RUNNING
        log.info("runner started", extra={**work.context, "attempt": request.attempt})

    def _check_runner(self, work: Work) -> None:
        ended = work.handle.poll()
        if ended is None:
            return
        message = self._record_attempt(work, ended)
        outcome = verdict(ended)
        log.info("runner exited: %s", outcome.value, extra={
            **work.context, "exit_code": ended.exit_code, "timed_out": ended.timed_out})
        work.handle = None
        if outcome is Verdict.DONE:
            work.conclude(Outcome.IMPORTED)
        elif outcome is Verdict.FATAL:
            work.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
                f"runner exit {ended.exit_code}: {message}", "RunnerFailed", ended.stderr_tail,
                work.spec_uri, work.attempts, ended.exit_code))
        elif (delay := self._next_delay(work)) is None:
            self._exhausted(work, ended, message)
        else:
            self.metrics.retries.labels(work.importer.name).inc()
            work.stage, work.not_before = Stage.QUEUED, time.monotonic() + delay

    def _finish(self, work: Work) -> None:
        meta = {Outcome.IMPORTED: cts_api.META_COMPLETE, Outcome.NO_IMPORTER:
                cts_api.META_NO_OPERATION, Outcome.DEAD_LETTERED: cts_api.META_ERROR}
        if work.outcome in meta and work.event is not None:
            try:
                self.cts.set_meta(work.event.job_id, meta[work.outcome])
            except EventRejected:
                pass  # the CTS refuses meta for this job (e.g. no such job): nothing to record
        if work.outcome is Outcome.DEAD_LETTERED:
            self.dead_letters.publish(dlq.dead_letter(
                topic=work.record.topic, partition=work.record.partition,
                offset=work.record.offset, key=work.record.key, value=work.record.value,
                failure=work.failure))
            self.metrics.dead_letters.labels(work.failure.error_class).inc()
            log.warning("dead-lettered: %s", work.failure.reason, extra=work.context)
        self.metrics.events.labels(work.outcome.value).inc()
        work.stage = Stage.DONE
        del self.work[(work.partition, work.record.offset)]
        self.offsets.finish(work.partition, work.record.offset)

    # -- attempts, recorded in S3 -------------------------------------------------------

    def _count_attempts(self, work: Work) -> None:
        """Attempts made on this spec so far; a DLQ replay starts a fresh count."""
        since = (datetime.fromtimestamp(work.record.timestamp / 1000, timezone.utc)
                 if dlq.is_replay(work.record.headers) else None)
        with s3_failures("counting attempts"):
            uris = [u for u in self.store.result_uris(work.spec_uri)
                    if since is None or result_ended_at(u) > since]
            work.attempts = len(uris)
            work.first_started, work.latest = None, None
            if uris:
                first = _result_or_none(self.store, uris[0])
                work.latest = first if len(uris) == 1 else _result_or_none(self.store, uris[-1])
                if first is not None:
                    work.first_started = first.started_at

    def _record_attempt(self, work: Work, exit: RunnerExit) -> str:
        """Make sure the attempt has its result file; return the result's message."""
        before = work.attempts_at_launch
        self._count_attempts(work)
        status = _status(exit)
        self.metrics.runner_seconds.labels(work.importer.name, status.value).observe(
            (datetime.now(timezone.utc) - work.started_at).total_seconds())
        if work.attempts > before:
            if work.latest is None:
                return "the runner's result file is unreadable"
            return work.latest.message or work.latest.status.value
        # Killed, timed out or crashed before writing: the dispatcher writes the result.
        message = ("timed out after %ss and killed" % work.importer.settings.timeout_seconds
                   if exit.timed_out else f"runner ended without a result ({status.value})")
        with s3_failures("writing the result"):
            self.store.put_result(results.RunResult(
                spec_uri=work.spec_uri, job_id=work.event.job_id, status=status,
                exit_code=exit.exit_code if exit.exit_code is not None else 128 + (exit.signal or 9),
                started_at=work.started_at, ended_at=datetime.now(timezone.utc),
                error_type="Timeout" if exit.timed_out else None, message=message,
                traceback=exit.stderr_tail or None, written_by="dispatcher"))
        work.attempts = before + 1
        work.first_started = work.first_started or work.started_at
        return message

    def _next_delay(self, work: Work) -> float | None:
        start = work.first_started or datetime.now(timezone.utc)
        elapsed = (datetime.now(timezone.utc) - start).total_seconds()
        return work.policy.next_delay(work.attempts, elapsed)

    def _exhausted(self, work: Work, last_exit: RunnerExit | None, message: str = "") -> None:
        code = last_exit.exit_code if last_exit else None
        work.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
            f"retries exhausted after {work.attempts} attempt(s)"
            + (f"; last: {message}" if message else ""), "RetriesExhausted",
            last_exit.stderr_tail if last_exit else "", work.spec_uri, work.attempts, code))

    # -- capacity, commits, failures, shutdown ------------------------------------------

    def _runner_slot_free(self, importer) -> bool:
        running = [w for w in self.work.values() if w.stage is Stage.RUNNING]
        if len(running) >= self.config.max_in_flight:
            return False
        limit = importer.settings.max_concurrent
        return limit is None or sum(w.importer.name == importer.name for w in running) < limit

    def _set_paused(self, paused: bool) -> None:
        assigned = self.consumer.assignment()
        if paused:
            self.consumer.pause(*assigned)
        elif self._paused:
            self.consumer.resume(*assigned)
        self._paused = paused

    def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        moves = {p: o for p, o in self.offsets.to_commit().items()
                 if partitions is None or p in partitions}
        if not moves:
            return
        try:
            self.consumer.commit({p: OffsetAndMetadata(o, "", -1) for p, o in moves.items()})
        except CommitFailedError as error:
            log.warning("commit refused (group rebalancing): %s", error)
            return
        except KafkaError as error:
            self._note_failure("kafka", f"commit failed: {error}")
            return
        self.offsets.committed(moves)

    def _infrastructure_failed(self, work: Work, error: InfrastructureError) -> None:
        work.infra_failures += 1
        delay = _INFRA_BACKOFF.next_delay(work.infra_failures, 0.0)
        work.not_before = time.monotonic() + delay
        log.warning("infrastructure failure, retrying in %.1fs: %s", delay, error,
                    extra=work.context)
        self._note_failure(error.service, str(error))

    def _note_failure(self, service: str, message: str) -> None:
        self.metrics.infrastructure_failures.labels(service).inc()
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = self.health.failing_since = now
        elif now - self._failing_since > self.config.infrastructure_budget_seconds:
            log.error("infrastructure failing for more than %ss, stopping: %s",
                      self.config.infrastructure_budget_seconds, message)
            self._exit_status = EXIT_INFRASTRUCTURE
            self.stop()

    def _infrastructure_ok(self, work: Work) -> None:
        work.infra_failures = 0
        self._failing_since = self.health.failing_since = None

    def _observe(self) -> None:
        running = sum(w.stage is Stage.RUNNING for w in self.work.values())
        self.metrics.in_flight.set(running)
        self.metrics.buffered.set(len(self.work))
        self.health.last_turn = time.monotonic()
        if time.monotonic() - self._last_lag > 5:
            self._last_lag = time.monotonic()
            for partition in self.consumer.assignment():
                end = self.consumer.highwater(partition)
                if end is not None:
                    lag = end - self.consumer.position(partition)
                    self.metrics.lag.labels(partition.topic, partition.partition).set(lag)

    def _drain(self) -> int:
        """Stop intake, let runners finish within the grace period, commit, close."""
        deadline = time.monotonic() + self.config.shutdown_grace_seconds
        log.info("draining", extra={"events": len(self.work)})
        while time.monotonic() < deadline and any(
                w.stage in _DRAINED for w in self.work.values()):
            self._turn(draining=True)
        for work in self.work.values():
            if work.handle is not None:
                log.warning("grace period over, killing runner", extra=work.context)
                work.handle.kill()
        self._commit()
        self.consumer.close(autocommit=False)
        log.info("dispatcher stopped", extra={"exit_status": self._exit_status,
                                               "unfinished": len(self.work)})
        return self._exit_status

    def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._commit(set(revoked))

    def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Work of partitions not given back is dropped: its new owner redoes it."""
        known = {w.partition for w in self.work.values()} | self.offsets.partitions()
        lost = known - set(assigned)
        for key, work in list(self.work.items()):
            if work.partition in lost:
                if work.handle is not None:
                    work.handle.kill()
                del self.work[key]
        self.offsets.forget(lost)
        self._paused = False
        if lost:
            log.info("partitions lost in a rebalance", extra={"partitions": sorted(map(str, lost))})


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def on_partitions_revoked(self, revoked):
        self.dispatcher.partitions_revoked(set(revoked))

    def on_partitions_assigned(self, assigned):
        self.dispatcher.partitions_assigned(set(assigned))


def _result_or_none(store, uri: str) -> results.RunResult | None:
    # An unreadable result still counts as an attempt; it just tells nothing more.
    try:
        return results.from_yaml(store.read_text(uri))
    except ValueError:
        return None


def _status(exit: RunnerExit) -> results.Status:
    if exit.timed_out:
        return results.Status.TIMED_OUT
    if exit.exit_code is None:
        return results.Status.KILLED
    return results.status_for_exit_code(exit.exit_code)
