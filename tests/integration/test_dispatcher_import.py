"""A CTS completion event becomes Delta rows through the dispatcher, the real runner and
Spark (the one Spark import of the dispatcher's tests), next to the events that need no
runner; and a DLQ replay."""

from __future__ import annotations

import json
import urllib.request

from contract.spec import namespace_prefix
from stack import samples
from tests.integration.dispatcher_lane import Lane, event, wait_until


def test_complete_event_is_imported_and_other_events_are_acknowledged(stack, tmp_path):
    lane = Lane(stack, tmp_path)
    try:
        user = f"u{lane.name}"
        doc = samples.checkm2_job(stack, job_id=f"checkm2-{lane.name}", user=user)
        unknown = lane.job("unknown-image-1", "quick",
                           image={"name": "example.org/nobody/imports-this", "digest": "sha256:1"})
        lane.publish(event(doc["id"], state="job_submitted"))
        lane.publish(event(unknown["id"]))
        offset = lane.publish(samples.completion_event(doc))
        dispatcher = lane.dispatcher()

        wait_until(lambda: lane.committed()[0] == offset + 1, 300, "the import's commit")
        rows = stack.delta_rows(f"{namespace_prefix(user)}checkm2.db/quality_report")
        assert sorted(r["genome_name"] for r in rows) == sorted(samples.report_genomes())
        assert {r["cts_job_id"] for r in rows} == {doc["id"]}

        trans_id = json.loads(samples.completion_event(doc))["trans_id"]
        spec_uri = lane.store.spec_uri(doc["id"], trans_id)
        spec = lane.store.get_spec(spec_uri)
        assert spec.job.outputs[0].file == doc["outputs"][0]["file"]
        assert spec.importer.name == "checkm2" and spec.event.offset == offset
        assert [r.status.value for r in lane.store.results(spec_uri)] == ["succeeded"]
        assert lane.store.spec_uris() == [spec_uri]  # no spec for the other two events

        updates = [key for u in stack.cts.updates_for(doc["id"]) for key in u.set_fields]
        assert updates == ["cse_event_processing_start", "cse_event_processing_complete"]
        assert [key for u in stack.cts.updates_for(unknown["id"]) for key in u.set_fields] == [
            "cse_event_processing_no_operation"]
        assert lane.dead_letters(0, timeout=1) == []

        metrics = dispatcher.metrics()
        for outcome in ("imported", "ignored", "no_importer"):
            assert f'csep_events_total{{outcome="{outcome}"}} 1.0' in metrics
        assert "csep_runner_duration_seconds_count" in metrics
        lag = [line for line in metrics.splitlines() if line.startswith("csep_consumer_lag{")]
        assert lag == [f'csep_consumer_lag{{partition="0",topic="{lane.topic}"}} 0.0'], lag
        port = dispatcher.config["metrics_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as health:
            assert health.status == 200
        assert dispatcher.stop() == 0
        for secret in stack.secrets():
            assert secret not in lane.store.read_text(spec_uri)
            assert secret not in dispatcher.log(tail=10**7)
    finally:
        lane.close()


def test_dlq_replay_gets_fresh_attempts(stack, tmp_path):
    lane = Lane(stack, tmp_path)
    try:
        lane.job("replayed-1", "flaky")  # fails twice, then succeeds
        lane.complete("replayed-1")
        first = lane.dispatcher(retry={"max_attempts": 2, "initial_backoff_seconds": 0.2,
                                       "max_backoff_seconds": 1, "jitter_seconds": 0.1})
        [letter] = lane.dead_letters(1)
        assert first.stop() == 0
        assert lane.attempts("replayed-1") == 2 and not lane.done("replayed-1")

        again_dlq = f"{lane.name}-dlq-again"
        stack.kafka.create_topic(again_dlq, 1)
        lane.group = f"{lane.name}-replay"
        replay = lane.dispatcher(topic=lane.dlq_topic, dlq_topic=again_dlq,
                                 retry={"max_attempts": 2, "initial_backoff_seconds": 0.2,
                                        "max_backoff_seconds": 1, "jitter_seconds": 0.1})
        wait_until(lambda: lane.done("replayed-1"), 60, "the replayed import")
        assert lane.attempts("replayed-1") == 3
        assert len(lane.results("replayed-1")) == 3
        assert json.loads(letter.value)["error_dlq"].startswith("retries exhausted")
        assert replay.stop() == 0
    finally:
        lane.close()
