"""An event's stages, each its own frozen record, and the event held through them.

An event moves ``Prepare -> Queued -> Running -> Finish -> Done`` (back to ``Queued`` for
a retry or an infrastructure failure; to ``Finish`` from any stage once its outcome is
known; see :mod:`dispatcher.loop`). Each stage's record holds only what that stage has;
a step replaces the record, never changes it, so a record can be shared (every event
only acknowledged starts from :data:`IGNORED`). :class:`Held` is what stays the same: the
Kafka record, the event's source and the event.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, ClassVar

import attrs
from kafka import TopicPartition

from contract.claim import AttemptClaim
from dispatcher import dlq
from dispatcher.launch import RunnerExit, RunnerHandle
from dispatcher.ledger import Attempts
from dispatcher.retry import RetryPolicy


class Stage(enum.Enum):
    PREPARE = "prepare"
    QUEUED = "queued"
    RUNNING = "running"
    FINISH = "finish"
    DONE = "done"


class Outcome(enum.StrEnum):
    IMPORTED = "imported"
    IGNORED = "ignored"            # a state other than complete, an S3 event other than created
    NO_IMPORTER = "no_importer"    # no importer registered for the image or routing the object
    DEAD_LETTERED = "dead_lettered"


@attrs.frozen(kw_only=True)
class Import:
    """The import an event asks for, once its spec is written."""

    spec_uri: str
    importer: Any                             # registry.ImporterEntry
    policy: RetryPolicy                       # the default, with the importer's overrides


@attrs.frozen(kw_only=True)
class Prepare:
    """Asking the event's source for its import. A step may leave it part done (the
    source's ``pending`` state, a spec ``written`` and its ``attempts`` counted): the next
    step starts again from the source, with ``pending``."""

    stage: ClassVar[Stage] = Stage.PREPARE
    pending: Any = None                       # the source's state of an undecided plan
    written: Import | None = None
    attempts: Attempts = Attempts()


@attrs.frozen(kw_only=True)
class Queued:
    """Waiting for a runner slot, a retry's backoff, or another dispatcher's attempt."""

    stage: ClassVar[Stage] = Stage.QUEUED
    plan: Import
    attempts: Attempts
    claim: AttemptClaim | None = None         # claimed, its launch failed: launched again


@attrs.frozen(kw_only=True)
class Running:
    """A runner works on a claimed attempt; once it exited (``handle`` None), its exit is
    kept until the attempt is recorded."""

    stage: ClassVar[Stage] = Stage.RUNNING
    plan: Import
    attempts: Attempts
    claim: AttemptClaim
    started_at: datetime
    handle: RunnerHandle | None
    ended: RunnerExit | None = None


@attrs.frozen(kw_only=True)
class Finish:
    """Concluded: the outcome is made durable (the DLQ record acknowledged, CTS meta)."""

    stage: ClassVar[Stage] = Stage.FINISH
    outcome: Outcome
    failure: dlq.Failure | None = None        # a dead letter's
    plan: Import | None = None
    attempts: Attempts = Attempts()
    dead_letter: Any = None                   # the DLQ record's pending send
    dead_letter_sent: bool = False
    finish_failures: int = 0


@attrs.frozen
class Done:
    """Finished: its offset may be committed."""

    stage: ClassVar[Stage] = Stage.DONE


State = Prepare | Queued | Running | Finish | Done
#: The state of every event only acknowledged (a record can be shared: none changes).
IGNORED = Finish(outcome=Outcome.IGNORED)
DONE = Done()


@attrs.define
class Held:
    """One event taken in and not yet finished: a Kafka record, or one record (``part``
    of ``parts``) of an S3 notification, and the state of its stage (replaced, never
    changed, by each step)."""

    record: Any                               # kafka ConsumerRecord
    source: Any                               # dispatcher.sources.CtsSource | S3Source
    part: int = 0
    parts: int = 1
    event: Any = None                         # events.CtsEvent | s3events.ObjectCreated...
    state: State = Prepare()
    not_before: float = 0.0                   # monotonic time of the next step
    prepare_services: tuple[str, ...] | None = None  # what preparing it calls (cached)

    @property
    def stage(self) -> Stage:
        return self.state.stage

    @property
    def plan(self) -> Import | None:
        """The event's import, once its spec is written."""
        state = self.state
        return state.written if isinstance(state, Prepare) else getattr(state, "plan", None)

    @property
    def attempts(self) -> Attempts:
        """The attempts of its spec, as last counted."""
        return getattr(self.state, "attempts", Attempts())

    @property
    def partition(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)

    @property
    def key(self) -> tuple[TopicPartition, int, int]:
        return (self.partition, self.record.offset, self.part)

    @property
    def context(self) -> dict[str, Any]:
        """Fields every log line about this event carries."""
        plan = self.plan
        context = {"job_id": getattr(self.event, "job_id", None),
                   "topic": self.record.topic, "partition": self.record.partition,
                   "offset": self.record.offset, "attempt": self.attempts.spent or None,
                   "spec_uri": plan.spec_uri if plan else None, "source": self.source.kind}
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
        """On to finishing, with what is known of its import."""
        self.state = Finish(outcome=outcome, failure=failure, plan=self.plan,
                            attempts=self.attempts)
        self.not_before = 0.0
