"""The dispatcher as a process against the real stack (Kafka, S3, the CTS double), with
test importers run by the real runner: outcomes, DLQ, retries, infrastructure failures."""

from __future__ import annotations

import json
import signal

from tests.integration.dispatcher_lane import event, headers, wait_until


def cts_failures(dispatcher) -> float:
    for line in dispatcher.metrics().splitlines():
        if line.startswith('csep_infrastructure_failures_total{service="cts"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_poison_messages_reach_the_dlq_with_reason_and_headers_and_the_loop_goes_on(lane):
    lane.job("bad-data-1", "bad_data")
    lane.job("good-after-poison", "quick")
    poison = [
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"{not json", "not JSON"),
        (json.dumps({"job_id": "x", "state": "complete", "time": "t"}).encode(),
         "trans_id: required field missing"),
        (json.dumps({**event("x"), "job_id": 42}).encode(), "job_id: invalid value for type"),
        (json.dumps({**event("x"), "pad": "x" * 70000}).encode(), "oversized"),
        (json.dumps(event("no-such-job")).encode(), "CTS has no job 'no-such-job'"),
        (json.dumps(event("bad-data-1")).encode(), "runner exit 65"),
    ]
    offsets = [lane.publish(value, key=f"k{i}".encode()) for i, (value, _) in enumerate(poison)]
    good = lane.complete("good-after-poison")
    dispatcher = lane.dispatcher()

    wait_until(lambda: lane.committed()[0] == good + 1, 90, "the good event's commit")
    assert lane.done("good-after-poison")
    letters = lane.dead_letters(len(poison))
    assert len(letters) == len(poison)
    by_offset = {int(headers(r)["__connect.errors.offset"]): r for r in letters}
    assert sorted(by_offset) == offsets
    for offset, (value, reason) in zip(offsets, poison, strict=True):
        record, context = by_offset[offset], headers(by_offset[offset])
        assert context["__connect.errors.topic"] == lane.topic
        assert context["__connect.errors.partition"] == "0"
        assert reason in context["__connect.errors.exception.message"]
        assert record.key == f"k{offsets.index(offset)}".encode()
        try:
            original = json.loads(value)
        except ValueError:
            assert record.value == value  # carried as it was
            continue
        body = json.loads(record.value)
        assert reason in body["error_dlq"]
        assert {k: v for k, v in body.items() if not k.startswith("error_dlq")} == original
    runner_failure = headers(by_offset[offsets[-1]])
    assert runner_failure["__connect.errors.exception.class.name"] == "RunnerFailed"
    assert runner_failure["__csep.errors.exit.code"] == "65"
    assert runner_failure["__csep.errors.attempts"] == "1"
    assert runner_failure["__csep.errors.spec.uri"].endswith("/bad-data-1/t-bad-data-1/spec.yaml")
    last = json.loads(by_offset[offsets[-1]].value)
    assert "row 3 of the report is truncated" in last["error_dlq"]
    assert lane.attempts("bad-data-1") == 1
    assert any("cse_event_processing_error" in u.set_fields
               for u in lane.stack.cts.updates_for("bad-data-1"))
    metrics = dispatcher.metrics()
    assert 'csep_dead_letters_total{error_class="MalformedMessage"} 5.0' in metrics
    assert dispatcher.stop() == 0


def test_retries_count_attempts_in_s3_and_end_done_or_dead(lane):
    lane.job("flaky-1", "flaky")
    lane.job("failing-1", "failing")
    lane.job("sleep-60-hanging", "hanging")
    for job_id in ("flaky-1", "failing-1", "sleep-60-hanging"):
        lane.complete(job_id)
    dispatcher = lane.dispatcher()

    wait_until(lambda: lane.committed()[0] == 3, 120, "all three events finished")
    assert lane.done("flaky-1") and lane.attempts("flaky-1") == 3
    assert [r.status.value for r in lane.results("flaky-1")] == [
        "temporary_failure", "temporary_failure", "succeeded"]
    assert any("cse_event_processing_complete" in u.set_fields
               for u in lane.stack.cts.updates_for("flaky-1"))

    assert lane.attempts("failing-1") == 3 and not lane.done("failing-1")
    # The hanging importer's YAML allows 2 attempts of 3 s each.
    hanging = lane.results("sleep-60-hanging")
    assert [(r.status.value, r.written_by) for r in hanging] == [("timed_out", "dispatcher")] * 2
    # Killed at 3 s: on a loaded machine a runner may not reach the importer by then.
    assert lane.attempts("sleep-60-hanging") <= 2

    letters = {json.loads(r.value)["job_id"]: r for r in lane.dead_letters(2)}
    assert set(letters) == {"failing-1", "sleep-60-hanging"}
    failing = headers(letters["failing-1"])
    assert failing["__connect.errors.exception.class.name"] == "RetriesExhausted"
    assert failing["__csep.errors.attempts"] == "3"
    assert failing["__csep.errors.exit.code"] == "70"
    assert "this importer always fails" in json.loads(letters["failing-1"].value)["error_dlq"]
    assert headers(letters["sleep-60-hanging"])["__csep.errors.attempts"] == "2"
    assert 'csep_retries_total{importer="dispatch_test_flaky"} 2.0' in dispatcher.metrics()
    assert dispatcher.stop() == 0


def test_cts_outage_is_not_poison_and_the_event_is_imported_when_it_returns(lane):
    lane.job("during-outage", "quick")
    lane.stack.cts.outage(503)
    try:
        offset = lane.complete("during-outage")
        dispatcher = lane.dispatcher()
        wait_until(lambda: ("GET", "/admin/jobs/during-outage") in lane.stack.cts.requests,
                   30, "the dispatcher to ask the CTS")
        wait_until(lambda: cts_failures(dispatcher) >= 3, 30, "a few failed CTS calls")
        assert lane.committed()[0] is None
        assert not lane.done("during-outage")
    finally:
        lane.stack.cts.outage(None)
    wait_until(lambda: lane.committed()[0] == offset + 1, 60, "the commit after the outage")
    assert lane.done("during-outage")
    assert lane.dead_letters(0, timeout=1) == []
    assert dispatcher.stop() == 0


def test_infrastructure_failure_past_the_budget_stops_the_dispatcher(lane):
    lane.job("budget-1", "quick")
    lane.stack.cts.outage(503)
    try:
        lane.complete("budget-1")
        dispatcher = lane.dispatcher(infrastructure_budget_seconds=3)
        assert dispatcher.process.wait(60) == 69
    finally:
        lane.stack.cts.outage(None)
    assert lane.committed()[0] is None
    assert lane.dead_letters(0, timeout=1) == []


def test_attempt_counts_survive_a_dispatcher_restart(lane):
    lane.job("failing-restart", "failing")
    lane.complete("failing-restart")
    slow_retry = {"max_attempts": 3, "initial_backoff_seconds": 4, "max_backoff_seconds": 4,
                  "jitter_seconds": 0.1}
    first = lane.dispatcher(retry=slow_retry)
    wait_until(lambda: len(lane.results("failing-restart")) == 2, 60, "two failed attempts")
    first.stop(sig=signal.SIGKILL)

    second = lane.dispatcher(retry=slow_retry)
    [letter] = lane.dead_letters(1)
    assert headers(letter)["__csep.errors.attempts"] == "3"
    assert len(lane.results("failing-restart")) == 3
    wait_until(lambda: lane.committed()[0] == 1, 30, "the commit")
    assert second.stop() == 0


def test_s3_failures_are_infrastructure_not_poison(lane):
    lane.job("s3-down-1", "quick")
    lane.complete("s3-down-1")
    # S3 refuses the dispatcher's key: every S3 call fails.
    dispatcher = lane.dispatcher(infrastructure_budget_seconds=4,
                                 env={"AWS_SECRET_ACCESS_KEY": "not-the-key"})
    assert dispatcher.process.wait(60) == 69
    assert "s3: writing the spec" in dispatcher.log()
    assert lane.committed()[0] is None
    assert lane.dead_letters(0, timeout=1) == []
    assert not lane.done("s3-down-1")


def test_attempts_lost_to_other_writers_of_the_table_are_not_spent(lane):
    # The chaos run's loss: with a dozen runners MERGEing into one table, an import lost its
    # commit in every run of three attempts and was dead-lettered as retries exhausted.
    # Here each of the first two runner processes loses every run to a real concurrent
    # commit, and the importer allows one attempt.
    from collections import Counter

    from deltalake import DeltaTable

    from runner.conflicts import RUNS

    lane.job("conflicted-1", "conflicted")
    lane.complete("conflicted-1")
    dispatcher = lane.dispatcher()

    wait_until(lambda: lane.committed()[0] == 1, 300, "the event's commit")
    assert lane.dead_letters(0, timeout=1) == []
    results = lane.results("conflicted-1")
    assert [(r.status.value, r.exit_code) for r in results] == [
        ("write_conflict", 75), ("write_conflict", 75), ("succeeded", 0)]
    assert f"Delta write conflict in each of {RUNS} runs" in results[0].message
    rows = Counter(DeltaTable(str(lane.state_dir / "conflicted-1.delta"))
                   .to_pyarrow_table().column("id").to_pylist())
    assert rows == {"other-writer-1": RUNS, "other-writer-2": RUNS, "conflicted-1": 1}
    metrics = dispatcher.metrics()
    assert 'csep_write_conflicts_total{importer="dispatch_test_conflicted"} 2.0' in metrics
    assert 'csep_events_total{outcome="imported"} 1.0' in metrics
    assert dispatcher.stop() == 0


def test_an_event_refused_before_its_dispatcher_stopped_is_dead_lettered_unrun(lane):
    # What a dispatcher killed between its runner's verdict (bad data) and the commit
    # leaves: attempt 1's claim and result. The redelivered event is refused again from
    # that record; running the same spec would refuse it again.
    from contract import claim as claims
    from contract import result as results
    from dispatcher.ledger import now

    lane.job("refused-then-redelivered", "bad_data")
    spec_uri = lane.store.spec_uri("refused-then-redelivered", "t-refused-then-redelivered")
    claim = claims.AttemptClaim(attempt=1, owner="host/1/stopped", claimed_at=now(),
                                lease_until=now(), result_name=claims.result_name_for(1))
    lane.store.write_text(spec_uri.replace("spec.yaml", claims.claim_name(1)),
                          claims.to_yaml(claim))
    lane.store.write_text(spec_uri.replace("spec.yaml", claim.result_name), results.to_yaml(
        results.RunResult(spec_uri=spec_uri, job_id="refused-then-redelivered",
                          status=results.Status.BAD_DATA, exit_code=65, started_at=now(),
                          ended_at=now(), error_type="BadDataError",
                          message="row 3 of the report is truncated")))
    lane.complete("refused-then-redelivered")
    dispatcher = lane.dispatcher()

    [letter] = lane.dead_letters(1)
    context = headers(letter)
    assert context["__connect.errors.exception.class.name"] == "RunnerFailed"
    assert context["__csep.errors.exit.code"] == "65"
    assert context["__csep.errors.attempts"] == "1"
    assert "row 3 of the report is truncated" in json.loads(letter.value)["error_dlq"]
    wait_until(lambda: lane.committed()[0] == 1, 30, "the commit")
    assert lane.attempts("refused-then-redelivered") == 0  # no runner ran
    assert len(lane.results("refused-then-redelivered")) == 1
    assert dispatcher.stop() == 0
