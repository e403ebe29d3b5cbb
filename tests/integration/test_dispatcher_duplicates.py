"""Duplicate announcements and kills: the same completion announced twice, on two
partitions, never runs two runners at once; a dispatcher killed mid-attempt leaves an
attempt the next one takes over, and the audit tells it."""

from __future__ import annotations

import signal

import pytest

from contract.store import SpecStore
from runner import audit
from tests.integration.dispatcher_lane import Lane, event, wait_until


@pytest.fixture
def lane2(stack, tmp_path):
    lane = Lane(stack, tmp_path, partitions=2)
    yield lane
    lane.close()


def _spans(lane, job_id: str) -> list[tuple[float, float]]:
    path = lane.state_dir / f"{job_id}.spans"
    return [tuple(map(float, line.split())) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("dispatchers", [1, 2])
def test_two_copies_of_one_completion_never_run_at_once(lane2, dispatchers):
    lane = lane2
    job_id = "sleep-8-duplicate"
    lane.job(job_id, "sleepy")
    for partition in (0, 1):
        lane.publish(event(job_id), partition=partition)
    running = [lane.dispatcher() for _ in range(dispatchers)]
    wait_until(lambda: lane.committed() == {0: 1, 1: 1}, 120, "both copies committed")
    assert len(_spans(lane, job_id)) == 1  # the second copy took the first's outcome
    assert [r.status.value for r in lane.results(job_id)] == ["succeeded"]
    assert lane.dead_letters(0, timeout=1) == []
    for dispatcher in running:
        assert dispatcher.stop() == 0


def test_a_killed_dispatcher_s_attempt_is_taken_over_and_the_audit_tells_it(lane):
    job_id = "sleep-6-killed"
    lane.job(job_id, "sleepy")
    lane.complete(job_id)
    first = lane.dispatcher()
    wait_until(lambda: lane.attempts(job_id) == 1, 60, "the first runner")
    first.stop(sig=signal.SIGKILL)  # its runner dies with it
    second = lane.dispatcher()
    wait_until(lambda: lane.committed()[0] == 1, 120, "the import by the second dispatcher")
    assert lane.attempts(job_id) == 2 and len(_spans(lane, job_id)) == 1
    results = lane.results(job_id)
    assert [r.status.value for r in results] == ["succeeded"]
    store: SpecStore = lane.store
    spec_uri = store.spec_uri(job_id, f"t-{job_id}")
    story = audit.show(store, spec_uri)
    assert "attempt-0001.yaml" in story and "takeovers:" in story
    assert "attempt-0002.yaml" not in story  # the same attempt, relaunched
    assert second.stop() == 0
