"""Parallel runners, out-of-order commits, crash and graceful shutdown, against the real
stack with test importers run by the real runner."""

from __future__ import annotations

import json
import signal

import pytest

from tests.integration.dispatcher_lane import Lane, wait_until


@pytest.fixture
def lane2(stack, tmp_path):
    lane = Lane(stack, tmp_path, partitions=2)
    yield lane
    lane.close()


def test_a_slow_import_holds_only_its_own_commit_point(lane2):
    lane = lane2
    slow = "sleep-45-slow"
    lane.job(slow, "sleepy")
    before = "quick-p0-before"
    quick_p0 = [f"quick-p0-{i}" for i in range(3)]
    quick_p1 = [f"quick-p1-{i}" for i in range(3)]
    for job_id in [before, *quick_p0, *quick_p1]:
        lane.job(job_id, "quick")
    lane.complete(before, partition=0)
    slow_offset = lane.complete(slow, partition=0)
    for job_id in quick_p0:
        lane.complete(job_id, partition=0)
    for job_id in quick_p1:
        lane.complete(job_id, partition=1)
    dispatcher = lane.dispatcher(max_in_flight=4)

    wait_until(lambda: lane.committed()[1] == len(quick_p1), 40, "partition 1 committed")
    wait_until(lambda: all(lane.done(j) for j in quick_p0), 40, "partition 0's quick imports")
    assert not lane.done(slow)  # they ran beside it, not behind it
    assert slow_offset == 1
    assert lane.committed()[0] == slow_offset  # past the one before, held at the slow one

    wait_until(lambda: lane.committed()[0] == slow_offset + 1 + len(quick_p0), 90,
               "partition 0 committed after the slow import")
    assert lane.done(slow)
    assert dispatcher.stop() == 0


def test_sigkill_in_the_middle_of_a_batch_loses_nothing(lane):
    jobs = []
    for i in range(8):
        behaviour = ("sleepy", "quick", "bad_data", "quick")[i % 4]
        job_id = f"sleep-4-crash-{i}" if behaviour == "sleepy" else f"crash-{i}"
        lane.job(job_id, behaviour)
        lane.complete(job_id)
        jobs.append((job_id, behaviour))
    first = lane.dispatcher(max_in_flight=3)
    wait_until(lambda: sum(lane.attempts(j) > 0 for j, _ in jobs) >= 3, 60,
               "a few runners to have started")
    first.stop(sig=signal.SIGKILL)
    assert first.process.returncode == -signal.SIGKILL
    assert lane.committed()[0] != len(jobs)

    second = lane.dispatcher(max_in_flight=3)
    wait_until(lambda: lane.committed()[0] == len(jobs), 120, "every event committed")
    dead = {json.loads(r.value)["job_id"] for r in lane.dead_letters(2)}
    for job_id, behaviour in jobs:
        if behaviour == "bad_data":
            assert job_id in dead
        else:
            assert lane.done(job_id), job_id
    assert dead == {j for j, b in jobs if b == "bad_data"}
    assert second.stop() == 0


def test_sigterm_waits_for_the_runner_in_flight_and_commits(lane):
    job_id = "sleep-6-sigterm"
    lane.job(job_id, "sleepy")
    offset = lane.complete(job_id)
    dispatcher = lane.dispatcher()
    wait_until(lambda: lane.attempts(job_id) == 1, 30, "the runner to start")
    assert dispatcher.stop(sig=signal.SIGTERM, timeout=60) == 0
    assert lane.done(job_id)
    assert lane.committed()[0] == offset + 1


def test_a_rebalance_loses_nothing(lane2):
    lane = lane2
    jobs = []
    for partition in (0, 1):
        for i in range(3):
            job_id = f"sleep-5-rebalance-{partition}-{i}"
            lane.job(job_id, "sleepy")
            lane.complete(job_id, partition=partition)
            jobs.append(job_id)
    first = lane.dispatcher(max_in_flight=1)
    wait_until(lambda: sum(lane.attempts(j) > 0 for j in jobs) >= 1, 60, "a runner at work")
    second = lane.dispatcher(max_in_flight=4)  # same group: the partitions are shared out

    wait_until(lambda: lane.committed() == {0: 3, 1: 3}, 180, "both partitions committed")
    assert all(lane.done(j) for j in jobs)
    assert lane.dead_letters(0, timeout=1) == []
    # The first dispatcher gave a partition up to the second.
    wait_until(lambda: "partitions revoked in a rebalance" in first.log(tail=10**7), 30,
               "the first dispatcher to give a partition up")
    assert first.stop() == 0 and second.stop() == 0
