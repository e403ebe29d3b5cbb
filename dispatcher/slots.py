"""Runner slots: at most ``max_in_flight`` runners at once, and each importer's own limit."""

from __future__ import annotations

from collections import Counter


class RunnerSlots:
    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self._by_importer: Counter[str] = Counter()

    @property
    def in_use(self) -> int:
        return sum(self._by_importer.values())

    def free(self, importer: str, limit: int | None) -> bool:
        """Is there a slot for one more runner of ``importer`` (limited to ``limit``)?"""
        if self.in_use >= self.max_in_flight:
            return False
        return limit is None or self._by_importer[importer] < limit

    def take(self, importer: str) -> None:
        self._by_importer[importer] += 1

    def release(self, importer: str) -> None:
        self._by_importer[importer] -= 1
        if self._by_importer[importer] <= 0:
            del self._by_importer[importer]
