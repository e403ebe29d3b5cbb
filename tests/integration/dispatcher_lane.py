"""One test's own lane through the stack: topics, consumer group, spec prefix, state dir,
and the dispatcher process that works it."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contract.store import SpecStore
from dispatcher.launchers import RUNNER_ENV
from stack.dispatching import DispatcherProcess, dispatcher_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dispatcher_importers"
TEST_IMAGE = "example.org/csep-dispatch-tests/{}"

FAST_RETRY = {"max_attempts": 3, "initial_backoff_seconds": 0.2, "max_backoff_seconds": 1,
              "jitter_seconds": 0.1, "max_elapsed_seconds": 300}


def wait_until(condition, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Lane:
    def __init__(self, stack, tmp_path: Path, partitions: int = 1) -> None:
        self.stack = stack
        self.name = f"d{uuid.uuid4().hex[:10]}"
        self.topic, self.dlq_topic, self.group = (f"{self.name}-jobs", f"{self.name}-dlq",
                                                  f"{self.name}-group")
        self.partitions = partitions
        stack.kafka.create_topic(self.topic, partitions)
        stack.kafka.create_topic(self.dlq_topic, 1)
        self.state_dir = tmp_path / "state"
        self.state_dir.mkdir()
        self.tmp_path = tmp_path
        self.store = SpecStore(f"s3://{stack.lake_bucket}/specs-{self.name}", stack.s3.client())
        self.producer = KafkaProducer(bootstrap_servers=stack.kafka.bootstrap, acks="all")
        self.dispatchers: list[DispatcherProcess] = []

    # -- the dispatcher -------------------------------------------------------------------

    def dispatcher(self, topic: str | None = None, dlq_topic: str | None = None,
                   env: dict[str, str] | None = None, group_id: str | None = None,
                   spec_store: str | None = None, s3_topic: str | None = None,
                   **overrides: Any) -> DispatcherProcess:
        settings = {"retry": FAST_RETRY, "max_in_flight": 4, "shutdown_grace_seconds": 60,
                    "infrastructure_budget_seconds": 120, "attempt_lease_seconds": 6,
                    # The test importers record what they did in CSEP_TEST_STATE_DIR.
                    "launcher": {"subprocess": {
                        "pass_env": [*RUNNER_ENV, "CSEP_TEST_STATE_DIR"]}},
                    **overrides}
        config = dispatcher_config(
            self.stack, topic=topic or self.topic, dlq_topic=dlq_topic or self.dlq_topic,
            group_id=group_id or self.group, spec_store=spec_store or self.store.base,
            s3_topic=s3_topic, metrics_port=DispatcherProcess.free_port(), **settings)
        process = DispatcherProcess(
            self.stack, self.tmp_path / f"dispatcher-{len(self.dispatchers)}", config,
            env={"CSEP_IMPORTER_DIRS": f"@builtin:{FIXTURES}",
                 "CSEP_TEST_STATE_DIR": str(self.state_dir), **(env or {})})
        self.dispatchers.append(process)
        process.start()
        process.wait_serving()
        return process

    def close(self) -> None:
        for process in self.dispatchers:
            process.kill()
        self.producer.close()

    # -- events ---------------------------------------------------------------------------

    def job(self, job_id: str, behaviour: str, **fields: Any) -> dict:
        """Register a CTS job (no outputs) whose image is the test importer ``behaviour``."""
        doc = {"id": job_id, "user": "dispatchtests", "state": "complete",
               "image": {"name": TEST_IMAGE.format(behaviour.replace("_", "-")),
                         "digest": "sha256:00",
                         "tag": "1"},
               "job_input": {"params": {"args": []}}, "input_file_count": 0,
               "output_file_count": 0, "outputs": [],
               "transition_times": [{"state": "complete", "time": "2026-11-20T10:15:00+00:00",
                                     "trans_id": f"t-{job_id}"}], "admin_meta": {}, **fields}
        self.stack.cts.add_job(doc)
        return doc

    def publish(self, value: bytes | dict, partition: int = 0, key: bytes | None = None,
                topic: str | None = None, headers=None) -> int:
        """Send one message and return its offset."""
        if isinstance(value, dict):
            value = json.dumps(value).encode()
        sent = self.producer.send(topic or self.topic, value=value, key=key,
                                  partition=partition, headers=headers or []).get(timeout=30)
        return sent.offset

    def complete(self, job_id: str, partition: int = 0) -> int:
        return self.publish(event(job_id), partition)

    # -- what happened --------------------------------------------------------------------

    def committed(self, topic: str | None = None) -> dict[int, int | None]:
        consumer = KafkaConsumer(bootstrap_servers=self.stack.kafka.bootstrap,
                                 group_id=self.group, enable_auto_commit=False)
        try:
            return {p: consumer.committed(TopicPartition(topic or self.topic, p))
                    for p in range(self.partitions)}
        finally:
            consumer.close()

    def dead_letters(self, expected: int, timeout: float = 60.0) -> list:
        """Read the DLQ topic from the start until ``expected`` records (or timeout)."""
        consumer = KafkaConsumer(bootstrap_servers=self.stack.kafka.bootstrap,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 consumer_timeout_ms=1000)
        consumer.assign([TopicPartition(self.dlq_topic, 0)])
        records: list = []
        deadline = time.monotonic() + timeout
        try:
            while len(records) < expected and time.monotonic() < deadline:
                records.extend(consumer)
            # Anything more that would arrive meanwhile is an unexpected dead letter.
            records.extend(consumer)
        finally:
            consumer.close()
        return records

    def attempts(self, job_id: str) -> int:
        path = self.state_dir / f"{job_id}.attempts"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def done(self, job_id: str) -> bool:
        return (self.state_dir / f"{job_id}.done").exists()

    def results(self, job_id: str) -> list:
        return self.store.results(self.store.spec_uri(job_id, f"t-{job_id}"))


def event(job_id: str, state: str = "complete", trans_id: str | None = None) -> dict:
    return {"job_id": job_id, "state": state, "time": "2026-11-20T10:15:00+00:00",
            "trans_id": trans_id or f"t-{job_id}"}


def headers(record) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}
