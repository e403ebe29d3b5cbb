"""Intake and commits: the consumer side of the dispatcher.

It polls the topics (the CTS topic, and the S3 notification topic when configured), takes
each new record in once (a record redelivered after a
rebalance that gave the partition back is skipped), pauses partitions that must not
deliver more (the buffer is full, a service is down, or one partition's
finished-but-uncommitted span behind a slow event reached its bound), commits per
partition up to the first unfinished event, and reports lag. Every call to Kafka that
could block has a deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import CommitFailedError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata

from common.faults import ServiceFailure, calling
from dispatcher.offsets import OffsetTracker

log = logging.getLogger("dispatcher")


class Intake:
    def __init__(self, consumer, topics: list[str], *, call_timeout_seconds: float,
                 max_uncommitted_span: int,
                 on_lost: Callable[[set[TopicPartition]], None],
                 cooperative: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self.topics = topics
        self.call_timeout_ms = int(call_timeout_seconds * 1000)
        self.max_uncommitted_span = max_uncommitted_span
        self.on_lost = on_lost
        self.cooperative = cooperative
        self.offsets = OffsetTracker()
        self.clock = clock
        self._last_lag = 0.0

    def subscribe(self) -> None:
        self.consumer.subscribe(list(self.topics), listener=_Rebalance(self))

    def poll(self, *, accepting: bool, max_records: int, timeout_ms: int) -> list[Any]:
        """New records, in offset order per partition; taken in (pending) from now on.

        With ``accepting`` false every partition is paused; polling goes on regardless so
        the group keeps this consumer."""
        self._pause(accepting)
        batch = self.consumer.poll(timeout_ms=timeout_ms, max_records=max(max_records, 1))
        taken = []
        offsets = self.offsets
        for partition, records in batch.items():
            if records and offsets.seen(partition, records[0].offset):  # redelivered
                records = [r for r in records if not offsets.seen(partition, r.offset)]
            offsets.start_all(partition, [record.offset for record in records])
            taken.extend(records)
        return taken

    def behind(self) -> bool:
        """Whether a partition being read is known to hold records past those taken in:
        its high watermark at the last fetch (kept by the consumer, no request) is
        beyond them. A poll that came back short at the end of a fetch is not caught
        up if so."""
        consumer, offsets = self.consumer, self.offsets
        for partition in consumer.assignment() - consumer.paused():
            high, taken = consumer.highwater(partition), offsets.next_offset(partition)
            if high is not None and taken is not None and high > taken:
                return True
        return False

    def finish(self, record) -> None:
        """The record's outcome is durable: its offset may be committed."""
        # A TopicPartition is a named tuple: the plain tuple is the same key, built faster.
        self.offsets.finish((record.topic, record.partition), record.offset)

    def _pause(self, accepting: bool) -> None:
        assigned = self.consumer.assignment()
        wanted = set(assigned) if not accepting else {
            p for p in assigned if self.offsets.span(p) >= self.max_uncommitted_span}
        paused = self.consumer.paused()
        if wanted - paused:
            self.consumer.pause(*(wanted - paused))
        if (paused - wanted) & assigned:
            self.consumer.resume(*((paused - wanted) & assigned))

    def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit the partitions' commit points that moved. Raises ServiceFailure (kafka)
        when Kafka does not acknowledge within the deadline; a commit refused because the
        group is rebalancing is skipped (the partitions' new owner reads them again)."""
        moves = {p: o for p, o in self.offsets.to_commit().items()
                 if partitions is None or p in partitions}
        if not moves:
            return
        try:
            with calling("kafka", "committing offsets"):
                self.consumer.commit({p: OffsetAndMetadata(o, "", -1) for p, o in moves.items()},
                                     timeout_ms=self.call_timeout_ms)
        except ServiceFailure as failure:
            if isinstance(failure.__cause__, (CommitFailedError, RebalanceInProgressError)):
                # The next turn commits again, to whichever partitions are still ours.
                log.info("commit deferred: the group is rebalancing")
                return
            raise
        self.offsets.committed(moves)

    def lag(self, every_seconds: float = 5.0) -> dict[TopicPartition, int] | None:
        """Records behind the end of each assigned partition, at most every few seconds
        (None in between). Raises ServiceFailure (kafka) past the deadline."""
        if self.clock() - self._last_lag < every_seconds:
            return None
        self._last_lag = self.clock()
        assigned = self.consumer.assignment()
        if not assigned:
            return {}
        with calling("kafka", "reading end offsets"):
            ends = self.consumer.end_offsets(list(assigned), timeout_ms=self.call_timeout_ms)
            return {p: max(0, end - self.consumer.position(p, timeout_ms=self.call_timeout_ms))
                    for p, end in ends.items() if end is not None}

    def close(self) -> None:
        self.consumer.close(autocommit=False, timeout_ms=self.call_timeout_ms)

    # -- rebalances ---------------------------------------------------------------------
    #
    # Cooperative (incremental) rebalancing revokes only the partitions that move and
    # assigns only the new ones; eager rebalancing revokes every partition and assigns the
    # whole new set, so there the partitions to drop are those not given back.

    def revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit what finished on the revoked partitions; drop them if they move."""
        try:
            self.commit(revoked)
        except ServiceFailure as failure:
            log.warning("commit before a rebalance failed: %s", failure)
        if self.cooperative:
            self._drop(revoked & self.offsets.partitions(), "revoked in a rebalance")

    def assigned(self, assigned: set[TopicPartition]) -> None:
        if not self.cooperative:
            self._drop(self.offsets.partitions() - assigned, "not given back in a rebalance")

    def lost(self, lost: set[TopicPartition]) -> None:
        """The group dropped this consumer (its session expired): nothing may be
        committed; the partitions' new owners redo their events."""
        self._drop(lost & self.offsets.partitions(), "lost with the group membership")

    def _drop(self, partitions: set[TopicPartition], why: str) -> None:
        if not partitions:
            return
        self.offsets.forget(partitions)
        log.info("partitions %s", why, extra={"partitions": sorted(map(str, partitions))})
        self.on_lost(partitions)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    def on_partitions_revoked(self, revoked):
        self.intake.revoked(set(revoked))

    def on_partitions_assigned(self, assigned):
        self.intake.assigned(set(assigned))

    def on_partitions_lost(self, lost):
        self.intake.lost(set(lost))
