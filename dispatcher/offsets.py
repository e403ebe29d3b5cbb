"""Which offset of each partition may be committed while events finish out of order.

Events of one partition are worked on in parallel and finish in any order. The committed
offset of a partition is the next offset to read after a restart, so it may only move up
to the lowest offset that is not finished yet: everything below it is done (imported or
dead-lettered). A two-hour import holds its partition's commit point, never the others',
and never the events behind it, which are worked on and finished meanwhile.

Only unfinished offsets are kept (in offset order, so the lowest is at hand), so memory
follows the events in hand, not the span between the commit point and the newest offset.
That span is still reported (:meth:`OffsetTracker.span`) so intake can pause a partition
whose finished-but-uncommitted offsets pile up behind one slow event.

Pure bookkeeping, no Kafka: partitions are any hashable keys.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable


class _Partition:
    def __init__(self, first: int) -> None:
        self.pending: OrderedDict[int, None] = OrderedDict()  # unfinished, in offset order
        self.next_offset = first          # one past the highest offset taken in
        self.committed = first            # what Kafka has (or what reading started at)

    def commit_point(self) -> int:
        return next(iter(self.pending)) if self.pending else self.next_offset


class OffsetTracker:
    """Tracks started and finished offsets per partition; tells what to commit."""

    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition] = {}

    def start(self, partition: Hashable, offset: int) -> None:
        """An event was taken in. Offsets of a partition are started in increasing order."""
        self.start_all(partition, [offset])

    def start_all(self, partition: Hashable, offsets: list[int]) -> None:
        """:meth:`start` of each offset (a poll's, in increasing order), at once."""
        if not offsets:
            return
        state = self._partitions.get(partition)
        if state is None:
            # Reading starts at the group's committed offset (or earlier, with no
            # commit yet): committing the first offset again would acknowledge nothing.
            state = self._partitions[partition] = _Partition(offsets[0])
        state.pending.update(dict.fromkeys(offsets))
        state.next_offset = max(state.next_offset, offsets[-1] + 1)

    def finish(self, partition: Hashable, offset: int) -> None:
        """The event's outcome is durable (imported, acknowledged or dead-lettered)."""
        state = self._partitions.get(partition)
        if state is not None:
            state.pending.pop(offset, None)

    def seen(self, partition: Hashable, offset: int) -> bool:
        """True if this offset was already taken in (a redelivery after a rebalance)."""
        state = self._partitions.get(partition)
        return state is not None and offset < state.next_offset

    def next_offset(self, partition: Hashable) -> int | None:
        """One past the highest offset taken in (None for a partition not read yet)."""
        state = self._partitions.get(partition)
        return None if state is None else state.next_offset

    def commit_point(self, partition: Hashable) -> int | None:
        """The offset to commit: the lowest pending one, or one past the highest seen."""
        state = self._partitions.get(partition)
        return None if state is None else state.commit_point()

    def span(self, partition: Hashable) -> int:
        """Finished offsets not committable yet: behind the partition's oldest unfinished
        event. They would be read again after a crash."""
        state = self._partitions.get(partition)
        if state is None or not state.pending:
            return 0
        return state.next_offset - state.commit_point() - len(state.pending)

    def to_commit(self) -> dict[Hashable, int]:
        """Commit points that moved since :meth:`committed` was last told about them."""
        return {partition: state.commit_point() for partition, state in self._partitions.items()
                if state.commit_point() != state.committed}

    def committed(self, offsets: dict[Hashable, int]) -> None:
        """Kafka acknowledged these commits."""
        for partition, offset in offsets.items():
            if partition in self._partitions:
                self._partitions[partition].committed = offset

    def partitions(self) -> set[Hashable]:
        return set(self._partitions)

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Drop partitions this consumer no longer owns."""
        for partition in partitions:
            self._partitions.pop(partition, None)
