"""The dispatcher's loop: from an event on Kafka to a committed offset.

One thread turns the loop. Each turn it polls Kafka (so the group never evicts it, even
while a runner works for hours), takes new events in, moves every event it holds one step
forward, and commits per partition up to the first unfinished event. An event comes from
one of the sources of :mod:`dispatcher.sources` (a CTS job-state message, or one record
of an S3 event notification: a message of several records is several events, and its
offset is committed once all of them finished). It moves through these stages, each its
own frozen record (:mod:`dispatcher.stages`), each step idempotent so any of them may be
repeated:

    PREPARE   ask the event's source for the import (CTS: fetch the job, find the
              importer of its image; S3: route the object, look it up and take its
              checksum, over several turns for a large object), write the spec to S3
              (once), count the attempts already recorded there, mark processing start
              (CTS meta)
    QUEUED    wait for a runner slot (global and per importer), a retry's backoff, or
              another dispatcher's attempt on the same spec; claim the next attempt, launch
    RUNNING   the runner works (its claim's lease renewed); on exit: record the attempt,
              decide done / retry / DLQ
    FINISH    make the outcome durable: DLQ record acknowledged, CTS meta; then tell the
              finishing hooks (:mod:`dispatcher.finishing`: counts, /status, streaks)
    (done)    the offset may be committed

An event only acknowledged (a state other than complete) is concluded as it is taken
in, and a poll's worth of them is finished together (the hooks told once).

Each event is contained: whatever a step raises ends that event alone, in the DLQ with
its class, reason and traceback, unless :mod:`common.faults` says a service is at fault.
Then the event waits, its attempts unspent, behind that service's circuit breaker
(:mod:`dispatcher.breakers`); intake pauses meanwhile, and a breaker open past the budget
stops the dispatcher with exit status 69 for its supervisor to restart.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
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
from dispatcher.finishing import CountOutcomes, DeadLetterStreaks, FinishHook, ShowRecent
from dispatcher.intake import Intake
from dispatcher.launch import LaunchError, LaunchRequest, RunnerExit
from dispatcher.ledger import OWNER, AttemptLedger, Attempts, lease_expired
from dispatcher.metrics import Health, Metrics
from dispatcher.retry import RetryPolicy, Verdict, verdict
from dispatcher.slots import RunnerSlots
from dispatcher.sources import CtsSource, NoImport, Pending, S3Source
from dispatcher.stages import (
    DONE,
    IGNORED,
    Finish,
    Held,
    Import,
    Outcome,
    Prepare,
    Queued,
    Running,
    Stage,
)

log = logging.getLogger("dispatcher")

EXIT_OK = 0
EXIT_INFRASTRUCTURE = 69  # sysexits EX_UNAVAILABLE: a service stayed down past the budget
EXIT_DEAD_LETTER_STREAK = 70  # sysexits EX_SOFTWARE: an importer (or all) dead-letters all
_TRACE_LIMIT = 8192
#: While a backlog is read (polls come back full, or the last fetch showed more records
#: than those taken in), offsets are committed at most this often, counted from the last
#: commit or the loop's start: each commit is a round trip to the group coordinator. Once
#: caught up, every turn commits.
BACKLOG_COMMIT_SECONDS = 1.0


#: The services a stage's step calls: while one's breaker is open, the step waits.
#: A runner needs S3, the metastore and Spark besides its launcher. Preparing and
#: finishing call the services of the event's source (see :func:`_services`).
_RUNNER_SERVICES = ("launcher", "docker", "kubernetes", "runner", "s3", "metastore", "spark")
_SERVICES = {Stage.QUEUED: _RUNNER_SERVICES, Stage.RUNNING: ("s3",)}
_DRAINED = (Stage.RUNNING, Stage.FINISH)  # what still moves during a shutdown


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
        self.streaks = DeadLetterStreaks(config.dead_letter_streak, on_halt=self._halted)
        #: Told of every finished event (:mod:`dispatcher.finishing`).
        self.finish_hooks: list[FinishHook] = [CountOutcomes(metrics), ShowRecent(health),
                                               self.streaks]
        self.health.problems = lambda: "; ".join(
            filter(None, [self.breakers.problem(), self.streaks.problem()])) or None
        self.slots = RunnerSlots(config.max_in_flight)
        self.work: dict[tuple[TopicPartition, int, int], Held] = {}
        #: Events still unfinished of records that hold several (S3 notifications).
        self._parts_left: dict[tuple[TopicPartition, int], int] = {}
        self.default_policy = RetryPolicy(**attrs.asdict(config.retry))
        self._stopping = False
        self._exit_status = EXIT_OK
        self._last_status = 0.0
        self._last_commit = self.clock.monotonic()  # a backlog's first commit waits too

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
            backlog = accepting and (len(records) >= free or self.intake.behind())
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
        for held in list(self.work.values()):
            if clock.monotonic() > deadline:
                break  # the rest moves next turn, after a poll
            if held.not_before <= clock.monotonic() and (not draining or held.stage in _DRAINED):
                self._advance(held)

    def _take_in(self, records: list[Any]) -> None:
        """Take a poll's records in. Events only acknowledged (not actionable) are
        finished here, together (:meth:`_acknowledge`); the others wait for their steps."""
        ignored: list[Held] = []
        max_bytes = self.config.kafka.max_message_bytes
        for record in records:
            source = self._source_of(record)
            try:
                parsed = source.parse(record.value, max_bytes)
            except Exception as error:
                held = self._hold(Held(record, source))
                self._contain(held, error)
                continue
            if len(parsed) == 1 and not isinstance(event := parsed[0], Exception) \
                    and not event.actionable:
                # Most events: acknowledged, concluded from the start.
                ignored.append(Held(record, source, event=event, state=IGNORED))
                continue
            if len(parsed) > 1:
                self._parts_left[(TopicPartition(record.topic, record.partition),
                                  record.offset)] = len(parsed)
            for part, event in enumerate(parsed):
                if isinstance(event, Exception):  # this record of the message is malformed
                    held = self._hold(Held(record, source, part=part, parts=len(parsed)))
                    self._contain(held, event)
                    continue
                held = self._hold(Held(record, source, part=part, parts=len(parsed),
                                       event=event))
                if not event.actionable:
                    self._ignore(held)
        if ignored:
            self._acknowledge(ignored)

    def _hold(self, held: Held) -> Held:
        self.work[held.key] = held
        return held

    def _ignore(self, held: Held) -> None:
        """Conclude a non-actionable event and finish it now, one event's way."""
        if getattr(held.event, "reason", None):
            log.info("%s: acknowledged", held.event.reason, extra=held.context)
        held.conclude(Outcome.IGNORED)
        self._advance(held)

    def _acknowledge(self, ignored: list[Held]) -> None:
        """Finish a poll's non-actionable events (each the one record of its message)
        together: what :meth:`_finish` does for each, the hooks told once.

        Containment is the one-event way's: each event's own part (its source's
        ``finished``) is tried alone, and from the first that raises on, events go the
        one-event way (:meth:`_ignore`): that one is contained (held, or behind the
        breaker of the service it blamed), the later ones pass the breaker check each.
        While any breaker is open, every event goes that way."""
        if self.breakers.any_open():
            return self._ignore_each(ignored)
        outcome = Outcome.IGNORED.value  # an enum's value is a property: read it once
        for index, held in enumerate(ignored):
            try:
                if getattr(held.event, "reason", None):
                    log.info("%s: acknowledged", held.event.reason, extra=held.context)
                held.source.finished(held.event, outcome)
            except Exception as error:
                self._finished(ignored[:index])
                self._contain(self._hold(held), error)  # held: finishing is tried again
                return self._ignore_each(ignored[index + 1:])
        self._finished(ignored)

    def _ignore_each(self, ignored: list[Held]) -> None:
        for held in ignored:
            self._ignore(self._hold(held))

    def _source_of(self, record):
        """A record's source: the one its dead letter recorded (a DLQ replay), else its
        topic's."""
        recorded = dlq.source_of(record.headers)
        source = self.sources.get(recorded) if recorded is not None else None
        return source or self.topic_sources.get(record.topic, self.sources["cts"])

    def _advance(self, held: Held) -> None:
        """One step of one event, contained: whatever it raises ends here."""
        stage = held.stage
        if not self.breakers.allow(_services(held)):
            return
        try:
            state = held.state
            if isinstance(state, Prepare):
                self._prepare(held, state)
            elif isinstance(state, Queued):
                self._launch(held, state)
            elif isinstance(state, Running):
                self._check_runner(held, state)
            elif isinstance(state, Finish):
                self._finish(held, state)
        except Exception as error:
            return self._contain(held, error)
        if held.stage is not stage and stage is not Stage.RUNNING:
            self.breakers.succeeded(_services(held, stage))  # a step went through: they answered
        # A prepared event launches, and an ended one finishes, in the same turn.
        if held.stage is not stage and held.not_before <= self.clock.monotonic() and (
                held.stage is Stage.FINISH or (stage, held.stage) == (Stage.PREPARE,
                                                                      Stage.QUEUED)):
            self._advance(held)

    # -- the steps ----------------------------------------------------------------------

    def _prepare(self, held: Held, state: Prepare) -> None:
        ref = EventRef(topic=held.record.topic, partition=held.record.partition,
                       offset=held.record.offset, trans_id=held.event.trans_id,
                       time=held.event.time, source=held.source.kind)
        plan = held.source.plan(held.event, ref, state.pending)
        if isinstance(plan, Pending):  # e.g. a large object's checksum: more next turn
            held.state = attrs.evolve(state, pending=plan.state)
            return
        held.state = state = attrs.evolve(state, pending=None)
        if isinstance(plan, NoImport):
            log.info("%s", plan.reason, extra=held.context)
            return held.conclude(Outcome.NO_IMPORTER)
        entry, spec = plan.entry, plan.spec
        spec_uri, drift = self.ledger.write_spec(spec)
        written = Import(spec_uri=spec_uri, importer=entry,
                         policy=self.default_policy.overridden(
                             max_attempts=entry.settings.max_attempts))
        held.state = state = attrs.evolve(state, written=written)
        if drift:
            log.warning("the stored spec differs from this event's (%s); the stored one is "
                        "used and the difference recorded beside it", ", ".join(drift),
                        extra=held.context)
        held.state = state = attrs.evolve(state, attempts=self._attempts(held.record, spec_uri))
        if state.attempts.succeeded:
            return held.conclude(Outcome.IMPORTED)  # imported, but the commit was lost
        if state.attempts.refusal is not None:
            return self._refused_already(held, state.attempts.refusal)
        held.source.started(held.event)
        held.state = Queued(plan=written, attempts=state.attempts)
        if state.attempts.spent and self._next_delay(held) is None:
            self._exhausted(held, last_exit=None)

    def _launch(self, held: Held, state: Queued) -> None:
        name, settings = state.plan.importer.name, state.plan.importer.settings
        if self.streaks.halted(name) or not self.slots.free(name, settings.max_concurrent):
            return
        # A claim still held is one whose launch failed: launched again, not waited out.
        renewed = state.claim and self.ledger.renew(state.plan.spec_uri, state.claim)
        claim = renewed or self._claim_attempt(held, state)
        if not isinstance(held.state, Queued):  # concluded: imported, refused, exhausted
            return
        held.state = state = attrs.evolve(held.state, claim=claim)
        if claim is None:
            return
        request = LaunchRequest(
            spec_uri=state.plan.spec_uri, job_id=held.event.job_id, importer=name,
            attempt=claim.attempt, result_name=claim.result_name,
            timeout_seconds=settings.timeout_seconds, executor_cores=settings.executor_cores)
        try:
            handle = self.launcher.launch(request)
        except LaunchError as error:
            raise ServiceFailure("launcher", Fault.INFRASTRUCTURE,
                                 f"launching a runner: {one_line(error)}", "LaunchError") from error
        self.slots.take(name)
        held.state = Running(plan=state.plan, attempts=state.attempts, claim=claim,
                             started_at=self.clock.now(), handle=handle)
        log.info("runner started", extra={**held.context, "attempt": request.attempt})

    def _check_runner(self, held: Held, state: Running) -> None:
        if state.ended is None:
            assert state.handle is not None  # a runner that has not exited is in hand
            ended = state.handle.poll()
            if ended is None:
                return self._renew_lease(held, state)
            held.state = state = attrs.evolve(state, handle=None, ended=ended)
            self.slots.release(state.plan.importer.name)
        else:
            ended = state.ended
        recorded, attempts = self._record_attempt(held, state, ended)  # may raise: then
        held.state = queued = Queued(plan=state.plan, attempts=attempts)  # recorded next turn
        if recorded.status is results.Status.INFRASTRUCTURE:
            service = recorded.service or "runner"
            log.warning("runner could not reach %s: %s", service, recorded.message,
                        extra=held.context)
            self.metrics.infrastructure_failures.labels(service).inc()
            self.breakers.failed(service, recorded.message or "runner reported it unavailable")
            return  # no attempt spent; the breaker paces the next launch
        self.breakers.succeeded(_RUNNER_SERVICES)
        if recorded.status is results.Status.WRITE_CONFLICT:
            return self._lost_to_other_writers(held, queued, recorded)
        outcome = verdict(ended)
        message = recorded.message or recorded.status.value
        log.info("runner exited: %s", outcome.value, extra={
            **held.context, "exit_code": ended.exit_code, "timed_out": ended.timed_out})
        if outcome is Verdict.DONE:
            held.conclude(Outcome.IMPORTED)
        elif outcome is Verdict.FATAL:
            held.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
                f"runner exit {ended.exit_code}: {message}", "RunnerFailed", ended.stderr_tail,
                queued.plan.spec_uri, attempts.spent, ended.exit_code))
        elif (delay := self._next_delay(held)) is None:
            self._exhausted(held, ended, message)
        else:
            self.metrics.retries.labels(queued.plan.importer.name).inc()
            held.not_before = self.clock.monotonic() + delay

    def _finish(self, held: Held, state: Finish) -> None:
        """Make the outcome durable (its dead letter acknowledged, the source's record of
        it), then tell the hooks; each part is done once, whatever fails after it."""
        if state.outcome is Outcome.DEAD_LETTERED and not state.dead_letter_sent \
                and not self._dead_letter(held, state):
            return  # not acknowledged yet
        if held.event is not None:
            held.source.finished(held.event, state.outcome.value)
        self._finished([held])
        del self.work[held.key]

    def _dead_letter(self, held: Held, state: Finish) -> bool:
        """Send the event's dead letter (once) and tell whether the DLQ acknowledged it.
        Sent in one turn, acknowledged by a later one: the records of a turn go out
        together."""
        failure = state.failure
        assert failure is not None  # a dead letter is concluded with its failure
        pending = state.dead_letter
        if pending is None:
            pending = self.dead_letters.send(dlq.dead_letter(
                topic=held.record.topic, partition=held.record.partition,
                offset=held.record.offset, key=held.record.key,
                value=held.dead_letter_value(), failure=failure,
                minimal=state.finish_failures > 0, redact=self.dead_letters.redact,
                source=held.source.kind, record_index=held.part if held.parts > 1 else None))
        # Until it is acknowledged; a send that failed is made again, minimal.
        held.state = state = attrs.evolve(state, dead_letter=None)
        if not self.dead_letters.acknowledged(pending):
            held.state = attrs.evolve(state, dead_letter=pending)
            return False
        held.state = attrs.evolve(state, dead_letter_sent=True)
        self.metrics.dead_letters.labels(failure.error_class).inc()
        log.warning("dead-lettered: %s", failure.reason, extra=held.context)
        return True

    def _finished(self, finished: Sequence[Held]) -> None:
        """Events whose outcome is durable: the hooks are told, their offsets may be
        committed."""
        if not finished:
            return
        for hook in self.finish_hooks:
            hook(finished)
        for held in finished:
            held.state = DONE
            self._record_finished(held)

    def _halted(self, held: Held) -> None:
        """A dead-letter streak halted an importer, or intake."""
        log.error("%s", self.streaks.problem(), extra=held.context)
        if self.config.dead_letter_streak.action == "exit":
            self._exit_status = EXIT_DEAD_LETTER_STREAK
            self.stop()

    def _record_finished(self, held: Held) -> None:
        """The record's offset may be committed once its last event finished."""
        if held.parts > 1:
            record = (held.partition, held.record.offset)
            left = self._parts_left.get(record, 1) - 1
            if left > 0:
                self._parts_left[record] = left
                return
            self._parts_left.pop(record, None)
        self.intake.finish(held.record)

    # -- containment --------------------------------------------------------------------

    def _contain(self, held: Held, error: Exception) -> None:
        """Whatever one event's step raised: the infrastructure path when a service is at
        fault, else the DLQ with the error's class, reason and traceback."""
        if fault_of(error) is Fault.INFRASTRUCTURE:
            assert isinstance(error, ServiceFailure)  # only a ServiceFailure blames a service
            log.warning("%s; the event waits for it", error, extra=held.context)
            self.metrics.infrastructure_failures.labels(error.service).inc()
            self.breakers.failed(error.service, str(error))
            return
        plan = held.plan
        failure = dlq.Failure(
            one_line(error, 1000), _error_class(error), _trace(error),
            plan.spec_uri if plan else None, held.attempts.spent if plan else None)
        state = held.state
        if isinstance(state, Finish):
            # Finishing itself failed (the DLQ refused the record, a bug): next time a
            # minimal record; past that, the event is acknowledged with this log line.
            held.state = state = attrs.evolve(state, finish_failures=state.finish_failures + 1)
            log.error("finishing the event failed (%s): %s", failure.error_class,
                      failure.reason, extra={**held.context, "trace": failure.trace})
            if state.finish_failures > 2:
                log.error("giving up on the DLQ record; acknowledged with this log line",
                          extra={**held.context, "value": repr(held.record.value)[:2000]})
                held.state = attrs.evolve(state, dead_letter_sent=True)
            return
        if isinstance(state, Running) and state.handle is not None:
            # Never leave a runner behind an abandoned event.
            state.handle.kill()
            held.state = attrs.evolve(state, handle=None)
            self.slots.release(state.plan.importer.name)
        held.conclude(Outcome.DEAD_LETTERED, failure)

    # -- attempts -----------------------------------------------------------------------

    def _attempts(self, record: Any, spec_uri: str) -> Attempts:
        """Attempts made on this spec so far; a DLQ replay starts a fresh count."""
        since = (datetime.fromtimestamp(record.timestamp / 1000, self.clock.now().tzinfo)
                 if dlq.is_replay(record.headers) else None)
        return self.ledger.attempts(spec_uri, since)

    def _claim_attempt(self, held: Held, state: Queued) -> AttemptClaim | None:
        """Claim the spec's next attempt, or take over one whose dispatcher stopped. None
        while another dispatcher runs an attempt of the same spec (a duplicate
        announcement): the event then waits for that attempt's outcome; None also when
        the attempts say the event is concluded (imported, refused, out of attempts)."""
        spec_uri = state.plan.spec_uri
        attempts = self._attempts(held.record, spec_uri)
        held.state = attrs.evolve(state, attempts=attempts, claim=None)
        if attempts.succeeded:
            held.conclude(Outcome.IMPORTED)  # the other copy imported it
            return None
        if attempts.refusal is not None:  # the other copy's attempt refused it
            self._refused_already(held, attempts.refusal)
            return None
        if attempts.spent and self._next_delay(held) is None:
            self._exhausted(held, last_exit=None)
            return None
        running = attempts.open
        if running is not None and not lease_expired(running, self.clock.now()):
            log.info("attempt %d of this spec runs in %s: waiting for its outcome",
                     running.claim.attempt, running.claim.owner, extra=held.context)
            held.not_before = self.clock.monotonic() + min(
                5.0, self.config.attempt_lease_seconds / 4)
            return None
        if running is not None:
            claim = self.ledger.take_over(spec_uri, running)
            if claim is not None:
                log.warning("attempt %d was left by %s, whose lease ended: launching it again",
                            claim.attempt, running.claim.owner, extra=held.context)
        else:
            claim = self.ledger.claim(spec_uri, attempts.last_attempt + 1)
        if claim is None:  # another dispatcher was quicker
            held.not_before = self.clock.monotonic() + 1.0
        return claim

    def _renew_lease(self, held: Held, state: Running) -> None:
        assert state.handle is not None  # the runner works
        lease = self.config.attempt_lease_seconds
        if state.claim.lease_until - self.clock.now() > timedelta(seconds=lease * 2 / 3):
            return
        renewed = self.ledger.renew(state.plan.spec_uri, state.claim)
        if renewed is not None:
            held.state = attrs.evolve(state, claim=renewed)
            return
        # Our lease ran out (an S3 outage longer than it) and another dispatcher took the
        # attempt over: its runner is the one that counts.
        log.warning("attempt %d was taken over by another dispatcher: stopping ours",
                    state.claim.attempt, extra=held.context)
        state.handle.kill()
        held.state = Queued(plan=state.plan, attempts=state.attempts)
        self.slots.release(state.plan.importer.name)

    def _record_attempt(self, held: Held, state: Running, exit: RunnerExit
                        ) -> tuple[results.RunResult, Attempts]:
        """The attempt's result (the runner's own, or one written on its behalf) and the
        spec's attempts counted after it."""
        plan, claim = state.plan, state.claim
        status = _status(exit)
        seconds = (self.clock.now() - state.started_at).total_seconds()
        written = self.ledger.result(plan.spec_uri, claim)
        if written is not None:
            # The runner's own status says more than its exit code (75: a temporary
            # failure, or a write conflict that spends no attempt).
            self.metrics.runner_seconds.labels(plan.importer.name,
                                               written.status.value).observe(seconds)
            return written, self._attempts(held.record, plan.spec_uri)
        self.metrics.runner_seconds.labels(plan.importer.name, status.value).observe(seconds)
        # Killed, timed out, crashed, or never started: the dispatcher writes the result.
        message = (f"timed out after {plan.importer.settings.timeout_seconds}s and killed"
                   if exit.timed_out else f"runner ended without a result ({status.value})")
        result = results.RunResult(
            spec_uri=plan.spec_uri, job_id=held.event.job_id, status=status,
            exit_code=exit.exit_code if exit.exit_code is not None else 128 + (exit.signal or 9),
            started_at=state.started_at, ended_at=self.clock.now(),
            error_type="Timeout" if exit.timed_out else None, message=message,
            traceback=exit.stderr_tail or None, written_by="dispatcher",
            # Exit 69 without a result: the runner could not even record why.
            service=exit.infrastructure or (
                "runner" if status is results.Status.INFRASTRUCTURE else None))
        if not self.ledger.record(claim, result):  # the runner's, written meanwhile
            result = self.ledger.result(plan.spec_uri, claim) or result
        return result, self._attempts(held.record, plan.spec_uri)

    def _lost_to_other_writers(self, held: Held, state: Queued,
                               recorded: results.RunResult) -> None:
        """Every run of the import lost its commit to another writer of its table (runners
        of other events MERGEing into it): the attempt is not spent, since it says nothing
        about the event, and the import runs again after a back-off that grows with such
        attempts, until the policy's ``max_elapsed_seconds``."""
        plan, attempts = state.plan, state.attempts
        self.metrics.write_conflicts.labels(plan.importer.name).inc()
        at = self.clock.now()
        started = attempts.first_conflict_started or at
        delay = plan.policy.after_conflicts(attempts.conflicts, (at - started).total_seconds())
        message = recorded.message or recorded.status.value
        if delay is None:
            return held.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
                f"lost its commit to other writers of its table in {attempts.conflicts} "
                f"attempt(s) over {plan.policy.max_elapsed_seconds:.0f} s; last: {message}",
                "WriteConflict", recorded.traceback or "", plan.spec_uri, attempts.spent,
                recorded.exit_code))
        log.warning("every run of the import lost its commit to another writer of its table; "
                    "running it again in %.1f s, no attempt spent: %s", delay, message,
                    extra=held.context)
        held.not_before = self.clock.monotonic() + delay

    def _refused_already(self, held: Held, refusal: results.RunResult) -> None:
        """An attempt of this spec refused the event (bad data, a bad spec) and the event
        came back: its dispatcher stopped before committing it, or it was announced twice.
        The same spec would be refused again: dead-lettered with that verdict, unrun."""
        log.info("an attempt refused this event already (%s): dead-lettered without "
                 "running it again", refusal.status.value, extra=held.context)
        plan = held.plan
        held.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
            f"runner exit {refusal.exit_code}: {refusal.message or refusal.status.value}",
            "RunnerFailed", refusal.traceback or "", plan.spec_uri if plan else None,
            held.attempts.spent, refusal.exit_code))

    def _next_delay(self, held: Held) -> float | None:
        plan = held.plan
        assert plan is not None  # attempts are paced once the spec is written
        attempts, at = held.attempts, self.clock.now()
        start = attempts.first_started or at
        return plan.policy.next_delay(attempts.spent, (at - start).total_seconds())

    def _exhausted(self, held: Held, last_exit: RunnerExit | None, message: str = "") -> None:
        code = last_exit.exit_code if last_exit else None
        plan, spent = held.plan, held.attempts.spent
        held.conclude(Outcome.DEAD_LETTERED, dlq.Failure(
            f"retries exhausted after {spent} attempt(s)"
            + (f"; last: {message}" if message else ""), "RetriesExhausted",
            last_exit.stderr_tail if last_exit else "", plan.spec_uri if plan else None, spent,
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
        events = [_status_entry(held, clock, wall) for held in list(self.work.values())]
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
        for held in self.work.values():
            if isinstance(held.state, Running) and held.state.handle is not None:
                log.warning("grace period over, killing runner", extra=held.context)
                held.state.handle.kill()
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
        for key, held in list(self.work.items()):
            if held.partition not in lost:
                continue
            state = held.state
            if isinstance(state, Running) and state.handle is not None:
                state.handle.kill()
                self.slots.release(state.plan.importer.name)
                try:
                    self.ledger.release(state.plan.spec_uri, state.claim)
                except ServiceFailure as failure:  # then the lease runs out by itself
                    log.warning("could not release the attempt's claim: %s", failure,
                                extra=held.context)
            del self.work[key]


def _services(held: Held, stage: Stage | None = None) -> tuple[str, ...]:
    """The services the step of ``held`` at ``stage`` (default: its own) calls."""
    stage = stage or held.stage
    if stage is Stage.PREPARE:
        if held.prepare_services is None:
            held.prepare_services = held.source.prepare_services(held.event)
        return held.prepare_services
    if stage is Stage.FINISH:
        return held.source.finish_services
    return _SERVICES.get(stage, ())


def _status_entry(held: Held, clock: float, wall: datetime) -> dict[str, Any]:
    """What ``/status`` shows of an event held."""
    state, plan = held.state, held.plan
    claim = getattr(state, "claim", None)
    return {
        "job_id": getattr(held.event, "job_id", None), "source": held.source.kind,
        "topic": held.record.topic, "partition": held.record.partition,
        "offset": held.record.offset, "record": held.part if held.parts > 1 else None,
        "stage": state.stage.value, "importer": plan.importer.name if plan else None,
        "attempt": claim.attempt if claim else held.attempts.spent or None,
        "runner_age_seconds": round((wall - state.started_at).total_seconds(), 1)
        if isinstance(state, Running) and state.handle is not None else None,
        "next_step_in_seconds": round(held.not_before - clock, 1)
        if held.not_before > clock else None,
        "outcome": state.outcome.value if isinstance(state, Finish) else None,
    }


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
