"""csep-dlq against the real Kafka and S3, on dead letters a real dispatcher wrote: the
filters, ``show`` with the audit, a dry run, and a replay of 3 of 10 dead letters that
the dispatcher then imports, once."""

from __future__ import annotations

import io
import json

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from dispatcher import dlq
from dispatcher import dlq_tool as tool
from tests.integration.dispatcher_lane import event, wait_until

S3_NOTIFICATION = {"Records": [{
    "eventName": "s3:ObjectCreated:Put", "eventTime": "2026-11-20T10:00:00Z",
    "s3": {"bucket": {"name": "dataplane"}, "object": {"key": "raw/genomes%2B1.tsv", "size": 3}}}]}


@pytest.fixture
def lane(lane, monkeypatch):
    """The lane, with csep-dlq's environment (boto3 takes its credentials from it)."""
    for name, value in {**lane.stack.runner_env(),
                        "CSEP_KAFKA__BOOTSTRAP_SERVERS": lane.stack.kafka.bootstrap,
                        "CSEP_KAFKA__DLQ_TOPIC": lane.dlq_topic,
                        "CSEP_SPEC_STORE": lane.store.base}.items():
        monkeypatch.setenv(name, value)
    return lane


def run(lane, *argv: str) -> tuple[int, str]:
    """``csep-dlq`` on the lane's DLQ topic, in this process; its status and stdout."""
    out = io.StringIO()
    status = tool.main(list(argv), out=out)
    return status, out.getvalue()


def end_offset(lane, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=lane.stack.kafka.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def groups(lane) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=lane.stack.kafka.bootstrap)
    try:
        return {group["group_id"] for group in admin.list_groups()}
    finally:
        admin.close()


def subject_of(line: str) -> str:
    """Which of the test's dead letters a line of ``list`` is (the non-JSON one has no
    job: its error class tells it)."""
    return next(s for s in ("bad-data-1", "unknown-1", "s3://dataplane/raw/genomes+1.tsv",
                            "MalformedMessage") if s in line)


def test_list_filters_stats_and_show_read_both_sources_and_the_audit(lane):
    lane.job("bad-data-1", "bad_data")
    lane.complete("bad-data-1")           # RunnerFailed, with a spec and a result
    lane.complete("unknown-1")            # JobNotFound: no spec
    lane.publish(b"\xff not json at all")  # MalformedMessage, carried byte for byte
    dispatcher = lane.dispatcher()
    wait_until(lambda: lane.committed()[0] == 3, 120, "the three events dead-lettered")
    # An S3 dead letter beside them, in the format the dispatcher writes.
    letter = dlq.dead_letter(topic="s3-events", partition=0, offset=4, key=None,
                             value=json.dumps(S3_NOTIFICATION).encode(), source="s3",
                             failure=dlq.Failure("Records[0].s3.object.sequencer: missing",
                                                 "MalformedMessage"))
    lane.publish(letter.value, topic=lane.dlq_topic, headers=letter.headers)
    groups_before = groups(lane)

    status, listing = run(lane, "list")
    assert status == 0
    lines = listing.splitlines()
    assert len(lines) == 5, listing
    by_subject = {subject_of(line): line for line in lines[1:]}
    assert len(by_subject) == 4, listing
    failed = by_subject["bad-data-1"]
    assert "RunnerFailed" in failed and "dispatch_test_bad_data" in failed
    assert "row 3 of the report is truncated" in failed
    assert lane.store.spec_uri("bad-data-1", "t-bad-data-1") in failed
    assert "JobNotFound" in by_subject["unknown-1"]
    assert " s3 " in by_subject["s3://dataplane/raw/genomes+1.tsv"]

    def subjects(*filters: str) -> set[str]:
        status, text = run(lane, "list", *filters)
        assert status == 0, text
        return {subject_of(line) for line in text.splitlines()[1:]}

    assert subjects("--error-class", "MalformedMessage") == {
        "s3://dataplane/raw/genomes+1.tsv", "MalformedMessage"}
    assert subjects("--importer", "dispatch_test_bad_data") == {"bad-data-1"}
    assert subjects("--job", "unknown-1", "--job", "bad-data-1") == {"unknown-1", "bad-data-1"}
    assert subjects("--source", "s3") == {"s3://dataplane/raw/genomes+1.tsv"}
    assert subjects("--since", "1h", "--source", "cts", "--error-class", "JobNotFound") == {
        "unknown-1"}
    assert subjects("--until", "2h") == set()

    status, text = run(lane, "stats")
    assert text.startswith("4 dead letter(s)")
    assert any(line.split() == ["MalformedMessage", "2"] for line in text.splitlines())
    assert any(line.split() == ["dispatch_test_bad_data", "1"] for line in text.splitlines())

    offset = int(failed.split()[2].split(":")[1])
    status, shown = run(lane, "show", f"0:{offset}")
    assert status == 0
    assert "__csep.errors.attempts: 1" in shown and "BadDataError" in shown  # the trace
    assert "status: bad_data" in shown  # the attempt's result, from the audit in S3
    assert "importer:    dispatch_test_bad_data" in shown
    assert run(lane, "show", "0:99")[0] == 2
    assert run(lane, "--topic", f"{lane.name}-missing", "list")[0] == 2
    # Only read: no consumer group was created or moved.
    assert groups(lane) == groups_before
    assert dispatcher.stop() == 0


def test_replay_of_3_of_10_dead_letters_is_imported_once(lane):
    jobs = [f"late-{n}" for n in range(10)]
    for job_id in jobs:
        lane.publish(event(job_id))  # unknown to the CTS yet: JobNotFound
    dispatcher = lane.dispatcher()
    wait_until(lambda: lane.committed()[0] == 10, 120, "ten events dead-lettered")
    assert len(lane.dead_letters(10)) == 10
    chosen = ["late-1", "late-4", "late-7"]
    for job_id in jobs:  # the CTS knows them now; only the chosen ones are replayed
        lane.job(job_id, "quick")
    selection = [arg for job_id in chosen for arg in ("--job", job_id)]
    topic_end = end_offset(lane, lane.topic)

    status, dry = run(lane, "replay", *selection, "--dry-run")
    assert status == 0 and dry.count("\twould publish\t") == 3, dry
    assert end_offset(lane, lane.topic) == topic_end

    status, done = run(lane, "replay", *selection)
    assert status == 0 and done.count("\tpublished\t") == 3, done
    assert done.endswith("3 selected: 3 published\n")
    assert end_offset(lane, lane.topic) == topic_end + 3
    wait_until(lambda: all(lane.done(j) for j in chosen), 120, "the replayed jobs imported")
    wait_until(lambda: lane.committed()[0] == 13, 60, "the replays committed")
    assert [j for j in jobs if lane.done(j)] == chosen
    assert [r.status.value for j in chosen for r in lane.results(j)] == ["succeeded"] * 3

    status, again = run(lane, "replay", *selection)
    assert status == 0 and again.count("replayed already") == 3, again
    assert again.endswith("3 selected: 3 skipped\n")
    assert end_offset(lane, lane.topic) == topic_end + 3
    assert end_offset(lane, lane.dlq_topic) == 10  # nothing dead-lettered again

    # A mark that cannot be read stops the replay of its record, rather than republish it.
    record = run(lane, "list", "--job", "late-2")[1].splitlines()[1].split()[2]  # "0:N"
    lane.store.write_text(f"{lane.store.base}/dlq-replays/{lane.dlq_topic}/"
                          f"{record.replace(':', '/')}.yaml", "a: [")
    status, _ = run(lane, "replay", "--job", "late-2")
    assert status == 2 and end_offset(lane, lane.topic) == topic_end + 3
    assert dispatcher.stop() == 0
