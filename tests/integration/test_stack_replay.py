"""``python -m stack replay`` against the session stack and a lane's dispatcher: an event
set's files reach S3 with their checksums, its jobs the CTS double, its events the topic,
and each event's outcome is printed once committed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests
from kafka import KafkaConsumer, TopicPartition

from stack import samples
from stack.local import subprocess_env
from stack.paths import ROOT
from stack.state import StackState

MIXED = Path(__file__).resolve().parents[1] / "fixtures" / "event_sets" / "mixed"


def replay(lane, directory: Path, state_file: Path,
           timeout: float = 120) -> subprocess.CompletedProcess:
    StackState.of(lane.stack).write(state_file)
    return subprocess.run(
        [sys.executable, "-m", "stack", "replay", str(directory), "--topic", lane.topic,
         "--dlq-topic", lane.dlq_topic, "--group", lane.group, "--timeout", str(timeout),
         "--state", str(state_file)],
        env=subprocess_env({}), cwd=ROOT, capture_output=True, text=True, timeout=timeout + 60)


def cts_job(stack, job_id: str) -> requests.Response:
    return requests.get(f"{stack.cts.url}/admin/jobs/{job_id}", timeout=10,
                        headers={"Authorization": f"Bearer {stack.cts.token}"})


def test_a_replayed_set_prints_each_events_outcome(lane, tmp_path):
    dispatcher = lane.dispatcher()
    done = replay(lane, MIXED, tmp_path / "stack.json")
    assert done.returncode == 0, done.stdout + done.stderr

    lines = done.stdout.splitlines()
    published = [line for line in lines if line.startswith("published ")]
    assert len(published) == 5
    outcomes = {line.split()[0]: line.split(None, 2)[2] for line in lines
                if not line.startswith("published ")}
    assert outcomes == {
        "replay-quick": "imported",
        "replay-refused": "no-op",
        "replay-unknown": "no-op",
        "replay-submitted": "ignored",
        "replay-bad-data": "dead-lettered: runner exit 65: "
                           "job replay-bad-data: row 3 of the report is truncated"}
    assert lane.done("replay-quick") and not lane.done("replay-bad-data")
    assert lane.attempts("replay-refused") == lane.attempts("replay-submitted") == 0

    doc = cts_job(lane.stack, "replay-quick").json()
    [output] = doc["outputs"]
    head = lane.stack.s3.client().head_object(Bucket="cts-data", Key="replay-quick/out/report.tsv",
                                              ChecksumMode="ENABLED")
    assert output["crc64nvme"] == head["ChecksumCRC64NVME"]
    assert dispatcher.stop() == 0


def test_a_wrong_checksum_stops_the_replay_before_anything_is_published(lane, tmp_path):
    directory = tmp_path / "set"
    (directory / "one").mkdir(parents=True)
    (directory / "one" / "report.tsv").write_text("a\tb\n")
    (directory / "one.json").write_text(
        (MIXED / "quick.json").read_text()
        .replace('"replay-quick"', '"replay-wrong-checksum"')
        .replace("cts-data/replay-quick/out/report.tsv",
                 "cts-data/replay-wrong-checksum/report.tsv")
        .replace("cts-data/replay-quick", "cts-data/replay-wrong-checksum")
        .replace('report.tsv"}', 'report.tsv", "crc64nvme": "AAAAAAAAAAA="}'))
    done = replay(lane, directory, tmp_path / "stack.json", timeout=10)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"replay: {directory / 'one.json'}: outputs[0].crc64nvme: 'AAAAAAAAAAA=', but "
        f"{directory / 'one' / 'report.tsv'} has '")
    assert cts_job(lane.stack, "replay-wrong-checksum").status_code == 404
    consumer = KafkaConsumer(bootstrap_servers=lane.stack.kafka.bootstrap)
    try:
        partition = TopicPartition(lane.topic, 0)
        assert consumer.end_offsets([partition]) == {partition: 0}
    finally:
        consumer.close()


def test_the_sample_set_is_staged_with_its_checksum(lane):
    doc = samples.checkm2_job(lane.stack, job_id=f"sample-{lane.name}", user="replayuser")
    assert cts_job(lane.stack, doc["id"]).json() == doc
    [output] = doc["outputs"]
    assert output["file"] == f"cts-data/sample-{lane.name}/quality_report.tsv"
    head = lane.stack.s3.client().head_object(
        Bucket="cts-data", Key=f"sample-{lane.name}/quality_report.tsv", ChecksumMode="ENABLED")
    assert output["crc64nvme"] == head["ChecksumCRC64NVME"]
