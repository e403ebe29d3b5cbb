"""Which offset of each partition may be committed while events finish out of order.

Events of one partition are worked on in parallel and finish in any order. The committed
offset of a partition is the next offset to read after a restart, so it may only move up
to the lowest offset that is not finished yet: everything below it is done (imported or
dead-lettered). A two-hour import holds its partition's commit point, never the others',
and never the events behind it, which are worked on and finished meanwhile.

Pure bookkeeping, no Kafka: partitions are any hashable keys.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable


class _Partition:
    def __init__(self) -> None:
        self.pending: set[int] = set()
        self._heap: list[int] = []
        self.next_offset: int | None = None   # one past the highest offset seen
        self.committed: int | None = None

    def lowest_pending(self) -> int | None:
        while self._heap and self._heap[0] not in self.pending:
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else None

    def add(self, offset: int) -> None:
        self.pending.add(offset)
        heapq.heappush(self._heap, offset)
        self.next_offset = max(self.next_offset or 0, offset + 1)


class OffsetTracker:
    """Tracks started and finished offsets per partition; tells what to commit."""

    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition] = {}

    def start(self, partition: Hashable, offset: int) -> None:
        """An event was taken in. Offsets of a partition are started in increasing order."""
        if partition not in self._partitions:
            # Reading starts at the group's committed offset (or earlier, with no
            # commit yet): committing the first offset again would acknowledge nothing.
            self._partitions[partition] = _Partition()
            self._partitions[partition].committed = offset
        self._partitions[partition].add(offset)

    def finish(self, partition: Hashable, offset: int) -> None:
        """The event's outcome is durable (imported, acknowledged or dead-lettered)."""
        state = self._partitions.get(partition)
        if state is not None:
            state.pending.discard(offset)

    def seen(self, partition: Hashable, offset: int) -> bool:
        """True if this offset was already taken in (a redelivery after a rebalance)."""
        state = self._partitions.get(partition)
        return state is not None and state.next_offset is not None and offset < state.next_offset

    def commit_point(self, partition: Hashable) -> int | None:
        """The offset to commit: the lowest pending one, or one past the highest seen."""
        state = self._partitions.get(partition)
        if state is None or state.next_offset is None:
            return None
        lowest = state.lowest_pending()
        return state.next_offset if lowest is None else lowest

    def to_commit(self) -> dict[Hashable, int]:
        """Commit points that moved since :meth:`committed` was last told about them."""
        moves = {}
        for partition, state in self._partitions.items():
            point = self.commit_point(partition)
            if point is not None and point != state.committed:
                moves[partition] = point
        return moves

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
