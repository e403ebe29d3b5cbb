"""Consumer groups at scale: dispatchers join and leave a group while imports run
(cooperative-sticky: imports of partitions that stay are not killed), and two groups
with their own registries each import the same stream at their own pace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.store import SpecStore
from tests.integration.dispatcher_lane import Lane, event, wait_until

SECOND_GROUP = Path(__file__).resolve().parents[1] / "fixtures" / "second_group_importers"


@pytest.fixture
def lane6(stack, tmp_path):
    lane = Lane(stack, tmp_path, partitions=6)
    yield lane
    lane.close()


def _moved(dispatcher) -> set[int]:
    """Partitions the dispatcher gave up, from its log."""
    moved = set()
    for line in dispatcher.log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if str(record.get("message", "")).startswith("partitions "):
            moved |= {int(p.rsplit("partition=", 1)[1].rstrip(")"))
                      for p in record.get("partitions", [])}
    return moved


def test_dispatchers_joining_and_leaving_lose_nothing_and_keep_staying_imports(lane6):
    lane = lane6
    jobs = {p: [f"sleep-6-p{p}-{i}" for i in range(3)] for p in range(6)}
    for partition, job_ids in jobs.items():
        for job_id in job_ids:
            lane.job(job_id, "sleepy")
            lane.publish(event(job_id), partition=partition)
    first = lane.dispatcher(max_in_flight=6)
    wait_until(lambda: sum(lane.attempts(j) for js in jobs.values() for j in js) >= 3, 60,
               "imports running")
    second = lane.dispatcher(max_in_flight=6)
    third = lane.dispatcher(max_in_flight=6)
    wait_until(lambda: sum(lane.done(j) for js in jobs.values() for j in js) >= 9, 180,
               "half the imports")
    assert second.stop() == 0  # one leaves; its partitions move to the others
    wait_until(lambda: lane.committed() == {p: 3 for p in range(6)}, 240, "every commit")
    assert all(lane.done(j) for js in jobs.values() for j in js)
    stayed = set(range(6)) - _moved(first)
    assert stayed, "the first dispatcher kept no partition"
    for partition in stayed:  # the first dispatcher's runners there were never killed
        for job_id in jobs[partition]:
            assert lane.attempts(job_id) == 1, job_id
    assert lane.dead_letters(0, timeout=1) == []
    for dispatcher in (first, third):
        assert dispatcher.stop() == 0


def test_two_groups_each_import_the_stream_with_their_own_registry(lane):
    job_ids = [f"groups-{i}" for i in range(6)]
    for job_id in job_ids:
        lane.job(job_id, "quick")
        lane.complete(job_id)
    fast = lane.dispatcher()
    slow_store = SpecStore(f"{lane.store.base}-second", lane.stack.s3.client())
    slow = lane.dispatcher(group_id=f"{lane.group}-second", spec_store=slow_store.base,
                           env={"CSEP_IMPORTER_DIRS": f"@builtin:{SECOND_GROUP}"})
    wait_until(lambda: all(lane.done(j) for j in job_ids), 120, "the first group's imports")
    assert not all((lane.state_dir / f"{j}.second").exists() for j in job_ids)  # own pace
    wait_until(lambda: all((lane.state_dir / f"{j}.second").exists() for j in job_ids), 180,
               "the second group's imports")
    for job_id in job_ids:  # each group's own spec, naming its own importer
        assert lane.store.get_spec(lane.store.spec_uri(job_id, f"t-{job_id}")).importer.name \
            == "dispatch_test_quick"
        assert slow_store.get_spec(slow_store.spec_uri(job_id, f"t-{job_id}")).importer.name \
            == "second_group_quick"
    assert fast.stop() == 0 and slow.stop() == 0
