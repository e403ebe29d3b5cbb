"""Per-service circuit breakers and the bounded uncommitted span, with a fake clock."""

from __future__ import annotations

from dispatcher.breakers import Breakers
from dispatcher.offsets import OffsetTracker
from dispatcher.retry import RetryPolicy
from dispatcher.slots import RunnerSlots

FIXED = RetryPolicy(max_attempts=1 << 30, max_elapsed_seconds=float("inf"),
                    initial_backoff_seconds=2.0, max_backoff_seconds=2.0, jitter_seconds=0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_open_breaker_lets_one_probe_through_per_window_and_closes_on_success():
    clock = Clock()
    breakers = Breakers(budget_seconds=60, backoff=FIXED, clock=clock)
    assert breakers.allow(["cts", "s3"])
    breakers.failed("cts", "HTTP 503")
    assert not breakers.allow(["cts", "s3"]) and breakers.allow(["s3"])
    assert breakers.problem() == "cts failing for 0s: HTTP 503"
    clock.now += 2.5
    assert breakers.allow(["cts"])          # the probe
    assert not breakers.allow(["cts"])      # only one per window
    breakers.succeeded(["cts"])
    assert breakers.allow(["cts"]) and breakers.problem() is None


def test_one_service_s_success_does_not_close_another_s_breaker():
    clock = Clock()
    breakers = Breakers(budget_seconds=60, backoff=FIXED, clock=clock)
    breakers.failed("s3", "refused")
    breakers.succeeded(["cts", "kafka"])
    assert [b.service for b in breakers.open()] == ["s3"]


def test_a_breaker_open_past_the_budget_is_reported():
    clock = Clock()
    breakers = Breakers(budget_seconds=10, backoff=FIXED, clock=clock)
    breakers.failed("metastore", "refused")
    clock.now += 5
    breakers.failed("metastore", "refused again")
    assert breakers.over_budget() is None
    clock.now += 6
    assert breakers.over_budget().service == "metastore"


def test_a_breaker_nobody_needs_is_released_once_its_probe_is_due():
    clock = Clock()
    breakers = Breakers(budget_seconds=10, backoff=FIXED, clock=clock)
    breakers.failed("launcher", "no docker")
    breakers.release_unneeded({"cts"})
    assert breakers.any_open()               # not before its probe time
    clock.now += 3
    breakers.release_unneeded({"launcher"})
    assert breakers.any_open()               # still needed
    breakers.release_unneeded({"cts"})
    assert not breakers.any_open()


def test_the_span_behind_a_slow_event_is_counted_without_keeping_finished_offsets():
    offsets = OffsetTracker()
    for offset in range(10, 1010):
        offsets.start("p", offset)
    for offset in range(11, 1010):
        offsets.finish("p", offset)          # everything but the slow 10
    assert offsets.span("p") == 999
    assert offsets.commit_point("p") == 10
    assert len(offsets._partitions["p"].pending) == 1  # memory follows pending events only
    offsets.finish("p", 10)
    assert offsets.span("p") == 0 and offsets.commit_point("p") == 1010


def test_runner_slots_count_globally_and_per_importer():
    slots = RunnerSlots(max_in_flight=3)
    slots.take("a")
    slots.take("a")
    assert not slots.free("a", limit=2) and slots.free("b", limit=None)
    slots.take("b")
    assert not slots.free("c", limit=None)
    slots.release("a")
    assert slots.free("a", limit=2) and slots.in_use == 2
