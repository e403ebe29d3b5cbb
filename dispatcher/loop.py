"""The dispatcher's loop: from an event on Kafka to a committed offset.

One thread turns the loop. Each turn it polls Kafka (so the group never evicts it, even
while a runner works for hours), takes new events in, moves every event it holds one step
forward, and commits per partition up to the first unfinished event. An event comes from
one of the sources of :mod:`dispatcher.sources` (a CTS job-state message, or one record
of an S3 event notification: a message of several records is several events, and its
offset is committed once all of them finished). It moves through these stages, each step
idempotent so any of them may be repeated:

    PREPARE   ask the event's source for the import (CTS: fetch the job, find the
              importer of its image; S3: route the object, look it up and take its
              checksum, over several turns for a large object), write the spec to S3
              (once), count the attempts already recorded there, mark processing start
              (CTS meta)
    QUEUED    wait for a runner slot (global and per importer), a retry's backoff, or
              another dispatcher's attempt on the same spec; claim the next attempt, launch
    RUNNING   the runner works (its claim's lease renewed); on exit: record the attempt,
              decide done / retry / DLQ
    FINISH    make the outcome durable: DLQ record acknowledged, CTS meta
    (done)    the offset may be committed

Each event is contained: whatever a step raises ends that event alone, in the DLQ with
its class, reason and traceback, unless :mod:`common.faults` says a service is at fault.
Then the event waits, its attempts unspent, behind that service's circuit breaker
(:mod:`dispatcher.breakers`); intake pauses meanwhile, and a breaker open past the budget
stops the dispatcher with exit status 69 for its supervisor to restart.
"""

from __future__ import annotations

import enum
import logging
import time
import traceback
from datetime import datetime, timedelta
from typing import Any

import attrs
from kafka import TopicPartition

from common.faults import Fault, ServiceFailure, fault_of, one_line
from contract import result as results
from contract.claim import AttemptClaim
from contract.spec import EventRef
from dispatcher import dlq, events
from dispatcher.breakers import Breakers
from dispatcher.clock import SYSTEM_CLOCK, Clock
from dispatcher.config import Config
from dispatcher.intake import Intake
from dispatcher.launchers import LaunchError, LaunchRequest, RunnerExit, RunnerHandle
from dispatcher.ledger import OWNER, AttemptLedger, Attempts, lease_expired
from dispatcher.metrics import Health, Metrics
from dispatcher.retry import RetryPolicy, Verdict, verdict
from dispatcher.slots import RunnerSlots
from dispatcher.sources import CtsSource, NoImport, Pending, S3Source

log = logging.getLogger("dispatcher")

EXIT_OK = 0
EXIT_INFRASTRUCTURE = 69  # sysexits EX_UNAVAILABLE: a service stayed down past the budget
EXIT_DEAD_LETTER_STREAK = 70  # sysexits EX_SOFTWARE: an importer (or all) dead-letters all
_TRACE_LIMIT = 8192
#: While polls come back full (a backlog), offsets are committed at most this often
#: (each commit is a round trip to the group coordinator); a short poll commits at once.
BACKLOG_COMMIT_SECONDS = 1.0


class Stage(enum.Enum):
    PREPARE = "prepare"
    QUEUED = "queued"
    RUNNING = "running"
    FINISH = "finish"
    DONE = "done"


#: The services a stage's step calls: while one's breaker is open, the step waits.
#: A runner needs S3, the metastore and Spark besides its launcher. Preparing and
#: finishing call the services of the event's source (see :func:`_services`).
_RUNNER_SERVICES = ("launcher", "docker", "kubernetes", "runner", "s3", "metastore", "spark")
_SERVICES = {Stage.QUEUED: _RUNNER_SERVICES, Stage.RUNNING: ("s3",)}
_DRAINED = (Stage.RUNNING, Stage.FINISH)  # what still moves during a shutdown


class DeadLetterStreaks:
    """Dead-lettered events in a row, per importer and across all events."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self._runs: dict[str | None, int] = {}
        self._all = 0
        self._halted: dict[str, str] = {}
        self.halted_all: str | None = None

    def halted(self, importer: str) -> bool:
        return importer in self._halted or self.halted_all is not None

    def finished(self, importer: str | None, dead: bool, reason: str) -> bool:
        """Count one finished event; True when it starts a halt."""
        self._all = self._all + 1 if dead else 0
        if importer is not None:
            self._runs[importer] = self._runs.get(importer, 0) + 1 if dead else 0
        limit, all_limit = self.settings.limit, self.settings.all_limit
        if (importer is not None and limit and self._runs[importer] >= limit
                and importer not in self._halted):
            self._halted[importer] = (f"importer {importer} halted after {limit} dead-lettered "
                                      f"events in a row (last: {reason[:300]})")
            return True
        if all_limit and self._all >= all_limit and self.halted_all is None:
            self.halted_all = (f"intake halted after {all_limit} dead-lettered events in a row "
                               f"(last: {reason[:300]})")
            return True
        return False

    def importers(self) -> list[str]:
        """The halted importers' names."""
        return sorted(self._halted)

    def problem(self) -> str | None:
        reasons = [*self._halted.values(), *filter(None, [self.halted_all])]
        return "; ".join(reasons) or None


class Outcome(enum.StrEnum):
    IMPORTED = "imported"
    IGNORED = "ignored"            # a state other than complete, an S3 event other than created
    NO_IMPORTER = "no_importer"    # no importer registered for the image or routing the object
    DEAD_LETTERED = "dead_lettered"


@attrs.define
class Work:
    """One event taken in and not yet finished: a Kafka record, or one record (``part``
    of ``parts``) of an S3 notification."""

    record: Any                               # kafka ConsumerRecord
    source: Any                               # dispatcher.sources.CtsSource | S3Source
    part: int = 0
    parts: int = 1
    stage: Stage = Stage.PREPARE
    event: Any = None                         # events.CtsEvent | s3events.ObjectCreated...
    pending: Any = None                       # the source's state of an undecided plan
    prepare_services: tuple[str, ...] | None = None  # what preparing it calls (cached)
    not_before: float = 0.0                   # monotonic time of the next step
    spec_uri: str | None = None
    importer: Any = None                      # registry.ImporterEntry
    policy: RetryPolicy | None = None
    attempts: Attempts = Attempts()
    claim: AttemptClaim | None = None         # the attempt this dispatcher runs now
    handle: RunnerHandle | None = None
    ended: RunnerExit | None = None           # the runner's exit, until it is recorded
    started_at: datetime | None = None
    outcome: Outcome | None = None
    failure: dlq.Failure | None = None
    dead_letter: Any = None                   # the DLQ record's pending send
    dead_letter_sent: bool = False
    finish_failures: int = 0

    @property
    def partition(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)

    @property
    def key(self) -> tuple[TopicPartition, int, int]:
        return (self.partition, self.record.offset, self.part)

    @property
    def context(self) -> dict[str, Any]:
        """Fields every log line about this event carries."""
        context = {"job_id": getattr(self.event, "job_id", None),
                   "topic": self.record.topic, "partition": self.record.partition,
                   "offset": self.record.offset, "attempt": self.attempts.spent or None,
                   "spec_uri": self.spec_uri, "source": self.source.kind}
        if self.parts > 1:
            context["record"] = self.part
        if getattr(self.event, "uri", None):
            context["object"] = self.event.uri
        return context

    def dead_letter_value(self) -> bytes | None:
        """The value a dead letter of this event carries: the message, or for one record
        of several, the message narrowed to that record (a replay redoes it alone)."""
        if self.parts == 1 or self.record.value is None:
            return self.record.value
        try:
            return self.source.record_value(self.record.value, self.part)
        except Exception:  # never lose a dead letter over its narrowing: carry it whole
            return self.record.value

    def conclude(self, outcome: Outcome, failure: dlq.Failure | None = None) -> None:
        self.outcome, self.failure, self.stage = outcome, failure, Stage.FINISH
        self.not_before = 0.0


class Dispatcher:
    """Consumes ``config.kafka.topic`` (and ``config.kafka.s3_topic``, when set) until
    :meth:`stop` or a persistent infrastructure failure; :meth:`run` returns the process
    exit status.

    ``clock`` is what the loop reads time through (the system's, but for unit tests);
    ``owner`` names this dispatcher in the attempts it claims."""

    def __init__(self, config: Config, *, consumer, producer, cts, store, registry,
                 launcher, metrics: Metrics, health: Health, clock: Clock = SYSTEM_CLOCK,
                 owner: str = OWNER) -> None:
        self.config = config
        self.clock = clock
        # The S3 source reads objects with the spec store's client (same credentials).
        self.sources = {"cts": CtsSource(cts, registry), "s3": S3Source(store.client, registry)}
        self.topic_sources = {config.kafka.topic: self.sources["cts"]}
        if config.kafka.s3_topic:
            self.topic_sources[config.kafka.s3_topic] = self.sources["s3"]
        self.intake = Intake(consumer, list(self.topic_sources),
                             call_timeout_seconds=config.kafka.call_timeout_seconds,
                             max_uncommitted_span=config.max_uncommitted_span,
                             on_lost=self._partitions_lost,
                             cooperative=config.kafka.assignor == "cooperative-sticky",
                             clock=clock.monotonic)
        self.dead_letters = dlq.DeadLetterQueue(producer, config.kafka.dlq_topic,
                                                config.kafka.call_timeout_seconds)
        self.ledger = AttemptLedger(store, config.attempt_lease_seconds, owner, clock)
        self.registry = registry
        self.launcher = launcher
        self.metrics = metrics
        self.health = health
        self.breakers = Breakers(config.infrastructure_budget_seconds, clock=clock.monotonic)
        self.streaks = DeadLetterStreaks(config.dead_letter_streak)
        self.health.problems = lambda: "; ".join(
            filter(None, [self.breakers.problem(), self.streaks.problem()])) or None
        self.slots = RunnerSlots(config.max_in_flight)
        self.work: dict[tuple[TopicPartition, int, int], Work] = {}
        #: Events still unfinished of records that hold several (S3 notifications).
        self._parts_left: dict[tuple[TopicPartition, int], int] = {}
        self.default_policy = RetryPolicy(**attrs.asdict(config.retry))
        self._stopping = False
        self._exit_status = EXIT_OK
        self._last_status = 0.0
        self._last_commit = float("-inf")

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        self.intake.subscribe()
        log.info("dispatcher started", extra={"topics": list(self.topic_sources),
                                               "group_id": self.config.kafka.group_id})
        while not self._stopping:
            self._turn(draining=False)
        return self._drain()

    def stop(self) -> None:
        """Stop intake and drain (safe to call from a signal handler)."""
        self._stopping = True

    def _turn(self, *, draining: bool) -> None:
        """One turn, bounded: a poll, then steps until the turn's budget is spent (each
        call a step makes has its own deadline), then commits. Nothing it calls can end
        the loop: a failure outside any one event is a Kafka failure."""
        try:
            free = self.config.max_buffered_events - len(self.work)
            accepting = (not draining and free > 0 and not self.breakers.any_open()
                         and not self.streaks.halted_all)
            # Events finishing (a DLQ acknowledgement due) are not kept waiting on a poll,
            # nor, for long, a runner's exit: the poll's wait is the time it goes unseen.
            stages = {w.stage for w in self.work.values()}
            records = self.intake.poll(
                accepting=accepting, max_records=free,
                timeout_ms=10 if Stage.FINISH in stages else 50 if Stage.RUNNING in stages
                else 200 if self.work else 500)
            self._take_in(records)
            self._advance_all(draining)
            # A breaker no held event needs has nobody to probe it: the next event will.
            self.breakers.release_unneeded(
                {s for w in self.work.values() for s in _services(w)})
            now = self.clock.monotonic()
            backlog = accepting and len(records) >= free
            if not backlog or now - self._last_commit >= BACKLOG_COMMIT_SECONDS:
                self.intake.commit()
                self._last_commit = now
            self.breakers.succeeded(("kafka",))
            self._observe()
        except Exception as error:
            failure = error if isinstance(error, ServiceFailure) else ServiceFailure(
                "kafka", Fault.INFRASTRUCTURE, f"the loop's Kafka side failed: {one_line(error)}")
            log.warning("%s", failure, exc_info=not isinstance(error, ServiceFailure))
            self.breakers.failed("kafka", str(failure))
            self.metrics.infrastructure_failures.labels("kafka").inc()
            self.clock.sleep(0.5)
        self._check_budget()

    def _advance_all(self, draining: bool) -> None:
        clock = self.clock
        deadline = clock.monotonic() + self.config.turn_budget_seconds
        for work in list(self.work.values()):
            if clock.monotonic() > deadline:
                break  # the rest moves next turn, after a poll
            if work.not_before <= clock.monotonic() and (not draining or work.stage in _DRAINED):
                self._advance(work)

    def _take_in(self, records: list[Any]) -> None:
        """Take a poll's records in. Events only acknowledged (not actionable) are
        finished here, together (:meth:`_acknowledge`); the others wait for their steps."""
        ignored: list[tuple[Any, Any, Any]] = []  # (record, source, event)
        for record in records:
            source = self._source_of(record)
            try:
                parsed = source.parse(record.value, self.config.kafka.max_message_bytes)
            except Exception as error:
                work = Work(record, source)
                self.work[work.key] = work
                self._contain(work, error)
                continue
            if len(parsed) == 1 and not isinstance(parsed[0], Exception) \
                    and not parsed[0].actionable:
                ignored.append((record, source, parsed[0]))  # most events: acknowledged
                continue
            if len(parsed) > 1:
                self._parts_left[(TopicPartition(record.topic, record.partition),
                                  record.offset)] = len(parsed)
            for part, event in enumerate(parsed):
                work = Work(record, source, part=part, parts=len(parsed))
                self.work[work.key] = work
                if isinstance(event, Exception):  # this record of the message is malformed
                    self._contain(work, event)
                    continue
                work.event = event
                if not event.actionable:
                    self._ignore(work)
        if ignored:
            self._acknowledge(ignored)

    def _ignore(self, work: Work) -> None:
        """Conclude a non-actionable event and finish it now, one event's way."""
        if getattr(work.event, "reason", None):
            log.info("%s: acknowledged", work.event.reason, extra=work.context)
        work.conclude(Outcome.IGNORED)
        self._advance(work)

    def _acknowledge(self, ignored: list[tuple[Any, Any, Any]]) -> None:
        """Finish a poll's non-actionable events (each the one record of its message)
        together: what :meth:`_finish` does for each, its counts made once.

        Containment is the one-event way's: each event's own part (its source's
        ``finished``) is tried alone, and from the first that raises on, events go the
        one-event way (:meth:`_ignore`): that one is contained (held, or behind the
        breaker of the service it blamed), the later ones pass the breaker check each.
        While any breaker is open, every event goes that way."""
        if self.breakers.any_open():
            return self._ignore_each(ignored)
        for index, (record, source, event) in enumerate(ignored):
            try:
                if getattr(event, "reason", None):
                    log.info("%s: acknowledged", event.reason,
                             extra=Work(record, source, event=event).context)
                source.finished(event, Outcome.IGNORED.value)
            except Exception as error:
                self._acknowledged(ignored[:index])
                work = Work(record, source, event=event)
                work.conclude(Outcome.IGNORED)
                self.work[work.key] = work
                self._contain(work, error)  # held: finishing is tried again
                return self._ignore_each(ignored[index + 1:])
        self._acknowledged(ignored)

    def _ignore_each(self, ignored: list[tuple[Any, Any, Any]]) -> None:
        for record, source, event in ignored:
            work = Work(record, source, event=event)
            self.work[work.key] = work
            self._ignore(work)

    def _acknowledged(self, finished: list[tuple[Any, Any, Any]]) -> None:
        """The finishing of events whose source recorded their end: counted, the newest
        shown in ``/status``, the dead-letter streak broken, their offsets committable."""
        if not finished:
            return
        self.metrics.events.labels(Outcome.IGNORED.value).inc(len(finished))
        # Only the newest outcomes are kept for /status: older ones would be pushed out.
        for record, source, event in finished[-(self.health.recent.maxlen or 0):]:
            work = Work(record, source, event=event)
            work.conclude(Outcome.IGNORED)
            self.health.finished(self._finished_entry(work))
        self.streaks.finished(None, False, "")  # (every breaker is closed: none to close)
        for record, _, _ in finished:
            self.intake.finish(record)

    def _source_of(self, record):
        """A record's source: the one its dead letter recorded (a DLQ replay), else its
        topic's."""
        recorded = dlq.source_of(record.headers)
        source = self.sources.get(recorded) if recorded is not None else None
        return source or self.topic_sources.get(record.topic, self.sources["cts"])

    def _advance(self, work: Work) -> None:
        """One step of one event, contained: whatever it raises ends here."""
        stage = work.stage
        if not self.breakers.allow(_services(work)):
            return
        try:
            {Stage.PREPARE: self._prepare, Stage.QUEUED: self._launch,
             Stage.RUNNING: self._check_runner, Stage.FINISH: self._finish}[stage](work)
        except Exception as error:
            return self._contain(work, error)
        if work.stage is not stage and stage is not Stage.RUNNING:
            self.breakers.succeeded(_services(work, stage))  # a step went through: they answered
        # A prepared event launches, and an ended one finishes, in the same turn.
        if work.stage is not stage and work.not_before <= self.clock.monotonic() and (
                work.stage is Stage.FINISH or (stage, work.stage) == (Stage.PREPARE,
                                                                      Stage.QUEUED)):
            self._advance(work)

    # -- the steps ----------------------------------------------------------------------

    def _prepare(self, work: Work) -> None:
        ref = EventRef(topic=work.record.topic, partition=work.record.partition,
                       offset=work.record.offset, trans_id=work.event.trans_id,
                       time=work.event.time, source=work.source.kind)
        plan = work.source.plan(work.event, ref, work.pending)
        if isinstance(plan, Pending):  # e.g. a large object's checksum: more next turn
            work.pending = plan.state
            return
        work.pending = None
        if isinstance(plan, NoImport):
            log.info("%s", plan.reason, extra=work.context)
            return work.conclude(Outcome.NO_IMPORTER)
        entry, spec = plan.entry, plan.spec
        work.spec_uri, drift = self.ledger.write_spec(spec)
        if drift:
            log.warning("the stored spec differs from this event's (%s); the stored one is "
                        "used and the difference recorded beside it", ", ".join(drift),
                        extra=work.context)
        work.importer = entry
        work.policy = self.default_policy.overridden(max_attempts=entry.settings.max_attempts)
        work.attempts = self._attempts(work)
        if work.attempts.succeeded:
            return work.conclude(Outcome.IMPORTED)  # imported, but the commit was lost
        if work.attempts.refusal is not None:
            return self._refused_already(work, work.attempts.refusal)
        work.source.started(work.event)
        work.stage = Stage.QUEUED
        if work.attempts.spent and self._next_delay(work) is None:
            self._exhausted(work, last_exit=None)

    def _launch(self, work: Work) -> None:
        name, limit = work.importer.name, work.importer.settings.max_concurrent
        if self.streaks.halted(name) or not self.slots.free(name, limit):
            return
        assert work.spec_uri is not None  # QUEUED: the spec is written
        # A claim still held is one whose launch failed: launched again, not waited out.
        held = work.claim and self.ledger.renew(work.spec_uri, work.claim)
        work.claim = held or self._claim_attempt(work)
        if work.claim is None:
            return
        request = LaunchRequest(
            spec_uri=work.spec_uri, job_id=work.event.job_id, importer=name,
            attempt=work.claim.attempt, result_name=work.claim.result_name,
            timeout_seconds=work.importer.settings.timeout_seconds,
            executor_cores=work.importer.settings.executor_cores)
        try:
            work.handle = self.launcher.launch(request)
        except LaunchError as error:
            raise ServiceFailure("launcher", Fault.INFRASTRUCTURE,
                                 f"launching a runner: {one_line(error)}", "LaunchError") from error
        self.slots.take(name)
        work.started_at = self.clock.now()
        work.stage = Stage.RUNNING
        log.info("runner started", extra={**work.context, "attempt": request.attempt})

    def _check_runner(self, work: Work) -> None:
        if work.ended is None:
            assert work.handle is not None  # RUNNING: the runner was launched
            work.ended = work.handle.poll()
            if work.ended is None:
                return self._renew_lease(work)
            work.handle = None
            self.slots.release(work.importer.name)
        ended = work.ended
        recorded = self._record_attempt(work, ended)  # may raise: then recorded next turn
        work.ended, work.claim = None, None
        if recorded.status is results.Status.INFRASTRUCTURE:
            service = recorded.service or "runner"
            log.warning("runner could not reach %s: %s", service, recorded.message,
                        extra=work.context)
            self.metrics.infrastructure_failures.labels(service).inc()
            self.breakers.failed(service, recorded.message or "runner reported it unavailable")
            work.stage = Stage.QUEUED  # no attempt spent; the breaker paces the next launch
            return
        self.breakers.succeeded(_RUNNER_SERVICES)
        if recorded.status is results.Status.WRITE_CONFLICT:
            return self._lost_to_other_writers(work, recorded)
        outcome = verdict(ended)
        message = recorded.message or recorded.status.value
        log.info("runner exited: %s", outcome.value, extra={
            **work.context, "exit_code": ended.exit_code, "timed_out": ended.timed_out})
        if outcome is Verdict.DONE:
            work.conclude(Outcome.IMPORTED)
        elif outcome is Verdict.FATAL:
            work.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
                f"runner exit {ended.exit_code}: {message}", "RunnerFailed", ended.stderr_tail,
                work.spec_uri, work.attempts.spent, ended.exit_code))
        elif (delay := self._next_delay(work)) is None:
            self._exhausted(work, ended, message)
        else:
            self.metrics.retries.labels(work.importer.name).inc()
            work.stage, work.not_before = Stage.QUEUED, self.clock.monotonic() + delay

    def _finish(self, work: Work) -> None:
        assert work.outcome is not None  # FINISH: the event is concluded
        if work.outcome is Outcome.DEAD_LETTERED and not work.dead_letter_sent:
            assert work.failure is not None  # a dead letter is concluded with its failure
            # Sent now, acknowledged by a later turn: the records of a turn go out together.
            if work.dead_letter is None:
                work.dead_letter = self.dead_letters.send(dlq.dead_letter(
                    topic=work.record.topic, partition=work.record.partition,
                    offset=work.record.offset, key=work.record.key,
                    value=work.dead_letter_value(), failure=work.failure,
                    minimal=work.finish_failures > 0, redact=self.dead_letters.redact,
                    source=work.source.kind,
                    record_index=work.part if work.parts > 1 else None))
            pending, work.dead_letter = work.dead_letter, None
            if not self.dead_letters.acknowledged(pending):
                work.dead_letter = pending
                return
            work.dead_letter_sent = True
            self.metrics.dead_letters.labels(work.failure.error_class).inc()
            log.warning("dead-lettered: %s", work.failure.reason, extra=work.context)
        if work.event is not None:
            work.source.finished(work.event, work.outcome.value)
        self.metrics.events.labels(work.outcome.value).inc()
        self.health.finished(self._finished_entry(work))
        if self.streaks.finished(work.importer.name if work.importer else None,
                                 work.outcome is Outcome.DEAD_LETTERED,
                                 work.failure.reason if work.failure else ""):
            log.error("%s", self.streaks.problem(), extra=work.context)
            if self.config.dead_letter_streak.action == "exit":
                self._exit_status = EXIT_DEAD_LETTER_STREAK
                self.stop()
        work.stage = Stage.DONE
        del self.work[work.key]
        self._record_finished(work)

    @staticmethod
    def _finished_entry(work: Work) -> dict[str, Any]:
        """What ``/status`` shows of a finished event."""
        assert work.outcome is not None  # finished: the event is concluded
        return {**work.context, "importer": getattr(work.importer, "name", None),
                "outcome": work.outcome.value,
                "error_class": work.failure.error_class if work.failure else None,
                "reason": work.failure.reason if work.failure else None}

    def _record_finished(self, work: Work) -> None:
        """The record's offset may be committed once its last event finished."""
        if work.parts > 1:
            record = (work.partition, work.record.offset)
            left = self._parts_left.get(record, 1) - 1
            if left > 0:
                self._parts_left[record] = left
                return
            self._parts_left.pop(record, None)
        self.intake.finish(work.record)

    # -- containment --------------------------------------------------------------------

    def _contain(self, work: Work, error: Exception) -> None:
        """Whatever one event's step raised: the infrastructure path when a service is at
        fault, else the DLQ with the error's class, reason and traceback."""
        if fault_of(error) is Fault.INFRASTRUCTURE:
            assert isinstance(error, ServiceFailure)  # only a ServiceFailure blames a service
            log.warning("%s; the event waits for it", error, extra=work.context)
            self.metrics.infrastructure_failures.labels(error.service).inc()
            self.breakers.failed(error.service, str(error))
            return
        failure = dlq.Failure(
            one_line(error, 1000), _error_class(error), _trace(error), work.spec_uri,
            work.attempts.spent if work.spec_uri else None)
        if work.stage is Stage.FINISH:
            # Finishing itself failed (the DLQ refused the record, a bug): next time a
            # minimal record; past that, the event is acknowledged with this log line.
            work.finish_failures += 1
            log.error("finishing the event failed (%s): %s", failure.error_class,
                      failure.reason, extra={**work.context, "trace": failure.trace})
            if work.finish_failures > 2:
                log.error("giving up on the DLQ record; acknowledged with this log line",
                          extra={**work.context, "value": repr(work.record.value)[:2000]})
                work.dead_letter_sent = True
            return
        if work.handle is not None:  # never leave a runner behind an abandoned event
            work.handle.kill()
            work.handle = None
            self.slots.release(work.importer.name)
        work.conclude(Outcome.DEAD_LETTERED, failure)

    # -- attempts -----------------------------------------------------------------------

    def _attempts(self, work: Work) -> Attempts:
        """Attempts made on this spec so far; a DLQ replay starts a fresh count."""
        since = (datetime.fromtimestamp(work.record.timestamp / 1000, self.clock.now().tzinfo)
                 if dlq.is_replay(work.record.headers) else None)
        assert work.spec_uri is not None  # attempts are counted once the spec is written
        return self.ledger.attempts(work.spec_uri, since)

    def _claim_attempt(self, work: Work) -> AttemptClaim | None:
        """Claim the spec's next attempt, or take over one whose dispatcher stopped. None
        while another dispatcher runs an attempt of the same spec (a duplicate
        announcement): the event then waits for that attempt's outcome."""
        work.attempts = self._attempts(work)
        assert work.spec_uri is not None  # _attempts needed it too
        if work.attempts.succeeded:
            work.conclude(Outcome.IMPORTED)  # the other copy imported it
            return None
        if work.attempts.refusal is not None:  # the other copy's attempt refused it
            self._refused_already(work, work.attempts.refusal)
            return None
        if work.attempts.spent and self._next_delay(work) is None:
            self._exhausted(work, last_exit=None)
            return None
        running = work.attempts.open
        if running is not None and not lease_expired(running, self.clock.now()):
            log.info("attempt %d of this spec runs in %s: waiting for its outcome",
                     running.claim.attempt, running.claim.owner, extra=work.context)
            work.not_before = self.clock.monotonic() + min(
                5.0, self.config.attempt_lease_seconds / 4)
            return None
        if running is not None:
            claim = self.ledger.take_over(work.spec_uri, running)
            if claim is not None:
                log.warning("attempt %d was left by %s, whose lease ended: launching it again",
                            claim.attempt, running.claim.owner, extra=work.context)
        else:
            claim = self.ledger.claim(work.spec_uri, work.attempts.last_attempt + 1)
        if claim is None:  # another dispatcher was quicker
            work.not_before = self.clock.monotonic() + 1.0
        return claim

    def _renew_lease(self, work: Work) -> None:
        # RUNNING: a runner of a claimed attempt of the spec.
        assert work.spec_uri is not None and work.claim is not None
        assert work.handle is not None
        lease = self.config.attempt_lease_seconds
        if work.claim.lease_until - self.clock.now() > timedelta(seconds=lease * 2 / 3):
            return
        renewed = self.ledger.renew(work.spec_uri, work.claim)
        if renewed is not None:
            work.claim = renewed
            return
        # Our lease ran out (an S3 outage longer than it) and another dispatcher took the
        # attempt over: its runner is the one that counts.
        log.warning("attempt %d was taken over by another dispatcher: stopping ours",
                    work.claim.attempt, extra=work.context)
        work.handle.kill()
        work.handle, work.claim, work.stage = None, None, Stage.QUEUED
        self.slots.release(work.importer.name)

    def _record_attempt(self, work: Work, exit: RunnerExit) -> results.RunResult:
        """The attempt's result: the runner's own, or one written on its behalf."""
        # RUNNING (or its exit not yet recorded): a launched, claimed attempt of the spec.
        assert work.spec_uri is not None and work.claim is not None
        assert work.started_at is not None
        status = _status(exit)
        seconds = (self.clock.now() - work.started_at).total_seconds()
        written = self.ledger.result(work.spec_uri, work.claim)
        if written is not None:
            # The runner's own status says more than its exit code (75: a temporary
            # failure, or a write conflict that spends no attempt).
            self.metrics.runner_seconds.labels(work.importer.name,
                                               written.status.value).observe(seconds)
            work.attempts = self._attempts(work)
            return written
        self.metrics.runner_seconds.labels(work.importer.name, status.value).observe(seconds)
        # Killed, timed out, crashed, or never started: the dispatcher writes the result.
        message = (f"timed out after {work.importer.settings.timeout_seconds}s and killed"
                   if exit.timed_out else f"runner ended without a result ({status.value})")
        result = results.RunResult(
            spec_uri=work.spec_uri, job_id=work.event.job_id, status=status,
            exit_code=exit.exit_code if exit.exit_code is not None else 128 + (exit.signal or 9),
            started_at=work.started_at, ended_at=self.clock.now(),
            error_type="Timeout" if exit.timed_out else None, message=message,
            traceback=exit.stderr_tail or None, written_by="dispatcher",
            # Exit 69 without a result: the runner could not even record why.
            service=exit.infrastructure or (
                "runner" if status is results.Status.INFRASTRUCTURE else None))
        if not self.ledger.record(work.claim, result):  # the runner's, written meanwhile
            result = self.ledger.result(work.spec_uri, work.claim) or result
        work.attempts = self._attempts(work)
        return result

    def _lost_to_other_writers(self, work: Work, recorded: results.RunResult) -> None:
        """Every run of the import lost its commit to another writer of its table (runners
        of other events MERGEing into it): the attempt is not spent, since it says nothing
        about the event, and the import runs again after a back-off that grows with such
        attempts, until the policy's ``max_elapsed_seconds``."""
        self.metrics.write_conflicts.labels(work.importer.name).inc()
        assert work.policy is not None  # set with the spec
        at = self.clock.now()
        started = work.attempts.first_conflict_started or at
        delay = work.policy.after_conflicts(work.attempts.conflicts,
                                            (at - started).total_seconds())
        message = recorded.message or recorded.status.value
        if delay is None:
            return work.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
                f"lost its commit to other writers of its table in {work.attempts.conflicts} "
                f"attempt(s) over {work.policy.max_elapsed_seconds:.0f} s; last: {message}",
                "WriteConflict", recorded.traceback or "", work.spec_uri, work.attempts.spent,
                recorded.exit_code))
        log.warning("every run of the import lost its commit to another writer of its table; "
                    "running it again in %.1f s, no attempt spent: %s", delay, message,
                    extra=work.context)
        work.stage, work.not_before = Stage.QUEUED, self.clock.monotonic() + delay

    def _refused_already(self, work: Work, refusal: results.RunResult) -> None:
        """An attempt of this spec refused the event (bad data, a bad spec) and the event
        came back: its dispatcher stopped before committing it, or it was announced twice.
        The same spec would be refused again: dead-lettered with that verdict, unrun."""
        log.info("an attempt refused this event already (%s): dead-lettered without "
                 "running it again", refusal.status.value, extra=work.context)
        work.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
            f"runner exit {refusal.exit_code}: {refusal.message or refusal.status.value}",
            "RunnerFailed", refusal.traceback or "", work.spec_uri, work.attempts.spent,
            refusal.exit_code))

    def _next_delay(self, work: Work) -> float | None:
        assert work.policy is not None  # set with the spec
        at = self.clock.now()
        start = work.attempts.first_started or at
        return work.policy.next_delay(work.attempts.spent, (at - start).total_seconds())

    def _exhausted(self, work: Work, last_exit: RunnerExit | None, message: str = "") -> None:
        code = last_exit.exit_code if last_exit else None
        work.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
            f"retries exhausted after {work.attempts.spent} attempt(s)"
            + (f"; last: {message}" if message else ""), "RetriesExhausted",
            last_exit.stderr_tail if last_exit else "", work.spec_uri, work.attempts.spent,
            code))

    # -- observation, shutdown, rebalances ------------------------------------------------

    def _observe(self) -> None:
        self.metrics.in_flight.set(self.slots.in_use)
        self.metrics.buffered.set(len(self.work))
        self.health.last_turn = time.monotonic()  # the process turns: real time
        if self.clock.monotonic() - self._last_status >= 1.0:
            self._last_status = self.clock.monotonic()
            self.health.status = self.status()
        lag = self.intake.lag()
        for partition, behind in (lag or {}).items():
            self.metrics.lag.labels(partition.topic, partition.partition).set(behind)

    def status(self) -> dict[str, Any]:
        """What ``/status`` shows: each event held, each breaker, each halted importer."""
        clock, wall = self.clock.monotonic(), self.clock.now()
        events = [{
            "job_id": getattr(w.event, "job_id", None), "source": w.source.kind,
            "topic": w.record.topic, "partition": w.record.partition,
            "offset": w.record.offset, "record": w.part if w.parts > 1 else None,
            "stage": w.stage.value, "importer": w.importer.name if w.importer else None,
            "attempt": w.claim.attempt if w.claim else w.attempts.spent or None,
            "runner_age_seconds": round((wall - w.started_at).total_seconds(), 1)
            if w.handle is not None and w.started_at else None,
            "next_step_in_seconds": round(w.not_before - clock, 1)
            if w.not_before > clock else None,
            "outcome": w.outcome.value if w.outcome else None,
        } for w in list(self.work.values())]
        return {"events": events, "runners_in_flight": self.slots.in_use,
                "breakers": self.breakers.states(), "halted": self.streaks.problem(),
                "halted_importers": self.streaks.importers(),
                "intake_halted": self.streaks.halted_all is not None}

    def _check_budget(self) -> None:
        breaker = self.breakers.over_budget()
        if breaker is not None and not self._stopping:
            log.error("%s failing for more than %ss, stopping: %s", breaker.service,
                      self.config.infrastructure_budget_seconds, breaker.reason)
            self._exit_status = EXIT_INFRASTRUCTURE
            self.stop()

    def _drain(self) -> int:
        """Stop intake, let runners finish within the grace period, commit, close."""
        deadline = self.clock.monotonic() + self.config.shutdown_grace_seconds
        log.info("draining", extra={"events": len(self.work)})
        while self.clock.monotonic() < deadline and any(
                w.stage in _DRAINED for w in self.work.values()):
            self._turn(draining=True)
            if self._exit_status == EXIT_INFRASTRUCTURE:
                break
        for work in self.work.values():
            if work.handle is not None:
                log.warning("grace period over, killing runner", extra=work.context)
                work.handle.kill()
        try:
            self.intake.commit()
        except ServiceFailure as failure:
            log.warning("final commit failed: %s", failure)
        self.intake.close()
        try:
            self.launcher.close()
        except Exception as error:  # what it held ends with this process anyway
            log.warning("could not close the launcher: %s", error)
        log.info("dispatcher stopped", extra={"exit_status": self._exit_status,
                                               "unfinished": len(self.work)})
        return self._exit_status

    def _partitions_lost(self, lost: set[TopicPartition]) -> None:
        """Work of partitions given to another consumer is dropped: its new owner redoes
        it. A running attempt is stopped and its claim released, so the new owner
        launches it again at once instead of waiting for the lease to run out."""
        for record in [r for r in self._parts_left if r[0] in lost]:
            del self._parts_left[record]
        for key, work in list(self.work.items()):
            if work.partition not in lost:
                continue
            if work.handle is not None:
                work.handle.kill()
                self.slots.release(work.importer.name)
                # A runner runs a claimed attempt of the spec.
                assert work.spec_uri is not None and work.claim is not None
                try:
                    self.ledger.release(work.spec_uri, work.claim)
                except ServiceFailure as failure:  # then the lease runs out by itself
                    log.warning("could not release the attempt's claim: %s", failure,
                                extra=work.context)
            del self.work[key]


def _services(work: Work, stage: Stage | None = None) -> tuple[str, ...]:
    """The services the step of ``work`` at ``stage`` (default: its own) calls."""
    stage = stage or work.stage
    if stage is Stage.PREPARE:
        if work.prepare_services is None:
            work.prepare_services = work.source.prepare_services(work.event)
        return work.prepare_services
    if stage is Stage.FINISH:
        return work.source.finish_services
    return _SERVICES.get(stage, ())


def _error_class(error: BaseException) -> str:
    if isinstance(error, ServiceFailure):
        return error.error_class
    if isinstance(error, events.MalformedMessage):
        return "MalformedMessage"
    return type(error).__name__


def _trace(error: BaseException) -> str:
    text = "".join(traceback.format_exception(error))
    return text if len(text) <= _TRACE_LIMIT else "...\n" + text[-_TRACE_LIMIT:]


def _status(exit: RunnerExit) -> results.Status:
    if exit.infrastructure:
        return results.Status.INFRASTRUCTURE
    if exit.timed_out:
        return results.Status.TIMED_OUT
    if exit.exit_code is None:
        return results.Status.KILLED
    return results.status_for_exit_code(exit.exit_code)
