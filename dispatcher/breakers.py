"""Circuit breakers, one per service (cts, s3, kafka, launcher, metastore, spark...).

A service's breaker opens at its first infrastructure failure. While it is open, steps
that need the service wait; one of them at a time is let through as a probe, after a
backoff that grows with the failures (1 s up to 30 s, with jitter). The probe's success
closes the breaker; a success of one service never closes another's. A breaker open for
longer than the budget tells the dispatcher to stop (its supervisor restarts it, and the
events it held are read again): the dispatcher never dead-letters an event for an outage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import attrs

from dispatcher.retry import RetryPolicy

PROBE_BACKOFF = RetryPolicy(max_attempts=1 << 30, max_elapsed_seconds=float("inf"),
                            initial_backoff_seconds=1.0, max_backoff_seconds=30.0,
                            jitter_seconds=1.0)


@attrs.define
class Breaker:
    service: str
    failures: int = 0
    open_since: float | None = None     # monotonic time of the first failure in a row
    next_probe: float = 0.0
    reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.open_since is not None

    def open_for(self, now: float) -> float:
        """Seconds the breaker has been open at ``now``; 0 when it is closed."""
        return 0.0 if self.open_since is None else now - self.open_since


class Breakers:
    def __init__(self, budget_seconds: float, backoff: RetryPolicy = PROBE_BACKOFF,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_seconds = budget_seconds
        self.backoff = backoff
        self.clock = clock
        self._breakers: dict[str, Breaker] = {}

    def _get(self, service: str) -> Breaker:
        return self._breakers.setdefault(service, Breaker(service))

    def allow(self, services: Iterable[str]) -> bool:
        """May a step that needs ``services`` run now? Closed breakers allow it; an open
        one allows one probe per backoff window (this call takes the window)."""
        now = self.clock()
        opened = [self._breakers[s] for s in services
                  if s in self._breakers and self._breakers[s].is_open]
        if any(now < breaker.next_probe for breaker in opened):
            return False
        for breaker in opened:
            breaker.next_probe = now + self._probe_delay(breaker)
        return True

    def failed(self, service: str, reason: str) -> None:
        """An infrastructure failure of ``service``: open (or keep open) its breaker."""
        breaker = self._get(service)
        now = self.clock()
        breaker.failures += 1
        breaker.reason = reason
        if breaker.open_since is None:
            breaker.open_since = now
        breaker.next_probe = now + self._probe_delay(breaker)

    def _probe_delay(self, breaker: Breaker) -> float:
        delay = self.backoff.next_delay(breaker.failures, 0.0)
        # A probe backoff never runs out: it has no elapsed-time bound and 2**30 attempts.
        assert delay is not None, f"the probe backoff of {breaker.service} ran out"
        return delay

    def succeeded(self, services: Iterable[str]) -> None:
        """``services`` answered: close their breakers."""
        for service in services:
            breaker = self._breakers.get(service)
            if breaker is not None and breaker.is_open:
                self._breakers[service] = Breaker(service)

    def release_unneeded(self, needed: set[str]) -> None:
        """Close open breakers of services no waiting step needs, once their probe is
        due: the event that would have probed them is gone (finished, or its partition
        moved to another dispatcher)."""
        now = self.clock()
        for breaker in self.open():
            if breaker.service not in needed and now >= breaker.next_probe:
                self._breakers[breaker.service] = Breaker(breaker.service)

    def open(self) -> list[Breaker]:
        return [b for b in self._breakers.values() if b.is_open]

    def any_open(self) -> bool:
        return any(b.is_open for b in self._breakers.values())

    def over_budget(self) -> Breaker | None:
        """An open breaker that has been open longer than the budget, if any."""
        now = self.clock()
        return next((b for b in self.open()
                     if b.open_for(now) > self.budget_seconds), None)

    def problem(self) -> str | None:
        """One line for the health endpoint, or None when every breaker is closed."""
        now = self.clock()
        opened = self.open()
        if not opened:
            return None
        return "; ".join(f"{b.service} failing for {b.open_for(now):.0f}s: {b.reason}"
                         for b in opened)

    def states(self) -> dict[str, dict]:
        """Each breaker's state, for the status view."""
        now = self.clock()
        return {b.service: {"open": b.is_open, "failures": b.failures,
                            "open_seconds": round(b.open_for(now), 1) if b.is_open else 0,
                            "reason": b.reason}
                for b in self._breakers.values()}
