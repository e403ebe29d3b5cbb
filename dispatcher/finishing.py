"""What finishing events tells the rest of the dispatcher, as narrow hooks.

An event's finishing first makes its outcome durable (the DLQ record acknowledged, the
source's record of it: CTS meta), steps that may fail and are tried again
(:mod:`dispatcher.loop`); then each hook is told, once, with the events finished
together (one, or a poll's worth of events only acknowledged): they count, show and
watch, and cannot fail an event.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from dispatcher.metrics import RECENT_OUTCOMES, Health, Metrics
from dispatcher.stages import Finish, Held, Outcome

#: A hook: told of events finished together, in the order they finished.
FinishHook = Callable[[Sequence[Held]], None]


def _finish(held: Held) -> Finish:
    state = held.state
    assert isinstance(state, Finish), state  # hooks are told of concluded events
    return state


class CountOutcomes:
    """``csep_events_total`` by outcome."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, finished: Sequence[Held]) -> None:
        counts = collections.Counter(_finish(held).outcome for held in finished)
        for outcome, count in counts.items():
            self.metrics.events.labels(outcome.value).inc(count)


class ShowRecent:
    """The last finished events in ``/status``: only the newest are kept (the older
    would be pushed out at once), each with its finishing state (the loop moves the held
    event's on), its entry built when ``/status`` is read."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def __call__(self, finished: Sequence[Held]) -> None:
        for held in finished[-RECENT_OUTCOMES:]:
            self.health.finished(functools.partial(_entry_as, held, _finish(held)))


def _entry_as(held: Held, state: Finish) -> dict[str, Any]:
    return entry(attrs.evolve(held, state=state))


def entry(held: Held) -> dict[str, Any]:
    """What ``/status`` shows of a finished event."""
    state = _finish(held)
    return {**held.context, "importer": state.plan.importer.name if state.plan else None,
            "outcome": state.outcome.value,
            "error_class": state.failure.error_class if state.failure else None,
            "reason": state.failure.reason if state.failure else None}


class DeadLetterStreaks:
    """Dead-lettered events in a row, per importer and across all events; as a hook,
    ``on_halt`` is called with the event whose dead letter started a halt."""

    def __init__(self, settings, on_halt: Callable[[Held], None] = lambda held: None
                 ) -> None:
        self.settings = settings
        self.on_halt = on_halt
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

    def __call__(self, finished: Sequence[Held]) -> None:
        """Count each finished event; a streak that starts a halt is told to
        ``on_halt``."""
        for held in finished:
            state = _finish(held)
            dead = state.outcome is Outcome.DEAD_LETTERED
            if self.finished(state.plan.importer.name if state.plan else None, dead,
                             state.failure.reason if state.failure else ""):
                self.on_halt(held)
