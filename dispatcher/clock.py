"""The dispatcher's clock: the one way the loop, its intake and the attempt ledger read time.

Two kinds of time, never mixed: ``monotonic()`` paces the loop (backoffs, breakers' probes,
turn budgets, the drain's grace period), ``now()`` is the wall-clock UTC time written in
claims and results and compared with the leases of other dispatchers. ``sleep()`` is the
loop's only wait outside Kafka's poll. The service runs on :data:`SYSTEM_CLOCK`; unit tests
pass a clock they move by hand, so a five-minute backoff passes in a microsecond.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never goes back."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""


class SystemClock:
    """The process's clocks: :func:`time.monotonic`, UTC wall time, :func:`time.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
