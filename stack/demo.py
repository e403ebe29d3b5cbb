"""The main job in one command: a CTS completion event imported end to end.

Starts the dispatcher (subprocess launcher) against a running local stack (its runners are
clients of the stack's Spark Connect server when it has one), registers the
sample CheckM2 job with the CTS double, publishes its completion event on ``cts-jobs``,
waits for the dispatcher to commit it, and prints the imported rows, the spec and result
in S3, and the CTS meta updates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contract.spec import namespace_prefix
from contract.store import SpecStore
from stack import samples
from stack.dispatching import DispatcherProcess, dispatcher_config
from stack.local import LocalStack
from stack.paths import ROOT

TOPIC, DLQ_TOPIC, GROUP = "cts-jobs", "cts-jobs-dlq", "cdm-spark-events"


def run_demo(stack: LocalStack, *, keep_running: bool, wait: Callable[[], None],
             timeout: float = 600.0) -> int:
    stack.kafka.create_topic(TOPIC, 3)
    stack.kafka.create_topic(DLQ_TOPIC, 1)
    store = SpecStore(f"s3://{stack.lake_bucket}/specs", stack.s3.client())
    config = dispatcher_config(stack, topic=TOPIC, dlq_topic=DLQ_TOPIC, group_id=GROUP,
                               spec_store=store.base, metrics_port=DispatcherProcess.free_port())
    # Runners inherit the dispatcher's environment: with the stack's Connect server they
    # are its clients, otherwise each starts a classic Spark of its own.
    runner_env = stack.connect_runner_env() if stack.spark_connect else None
    dispatcher = DispatcherProcess(stack, stack.base_dir / "dispatcher", config,
                                   env=runner_env).start()
    try:
        dispatcher.wait_serving()
        print(f"{'dispatcher':>22}: pid {dispatcher.process.pid}, log {dispatcher.log_path}")
        spark = stack.spark_connect.url if stack.spark_connect else "local[*] per runner"
        print(f"{'runners use Spark':>22}: {spark}")
        print(f"{'metrics and health':>22}: http://127.0.0.1:{config['metrics_port']}/metrics, /health")
        doc = samples.checkm2_job(stack)
        published = time.monotonic()
        sent = _publish(stack, samples.completion_event(doc))
        print(f"published the completion of CTS job {doc['id']} at "
              f"{sent.topic}/{sent.partition}@{sent.offset}", flush=True)
        if not _wait_committed(stack, TopicPartition(sent.topic, sent.partition),
                               sent.offset + 1, timeout, dispatcher):
            print(f"the event was not committed within {timeout:.0f}s; dispatcher log:\n"
                  f"{dispatcher.log()}")
            return 1
        print(f"imported and committed {time.monotonic() - published:.1f}s after publishing")
        _show(stack, store, doc)
        if keep_running:
            print("stack and dispatcher running; publish more events on 'cts-jobs'. "
                  "Ctrl-C stops them", flush=True)
            wait()
    finally:
        status = dispatcher.stop()
        print(f"dispatcher stopped (exit status {status})")
    return 0


def _publish(stack: LocalStack, value: bytes):
    producer = KafkaProducer(bootstrap_servers=stack.kafka.bootstrap, acks="all")
    try:
        return producer.send(TOPIC, value=value).get(timeout=30)
    finally:
        producer.close()


def _wait_committed(stack: LocalStack, partition: TopicPartition, offset: int,
                    timeout: float, dispatcher: DispatcherProcess) -> bool:
    consumer = KafkaConsumer(bootstrap_servers=stack.kafka.bootstrap, group_id=GROUP,
                             enable_auto_commit=False)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and dispatcher.process.poll() is None:
            if (consumer.committed(partition) or 0) >= offset:
                return True
            time.sleep(1)
        return False
    finally:
        consumer.close()


def _show(stack: LocalStack, store: SpecStore, doc: dict) -> None:
    from deltalake import DeltaTable

    table = f"{namespace_prefix(doc['user'])}checkm2.quality_report"
    database, name = table.split(".")
    location = f"s3://{stack.lake_bucket}/warehouse/{database}.db/{name}"
    rows = DeltaTable(location, storage_options={
        "AWS_ENDPOINT_URL": stack.s3.endpoint, "AWS_REGION": stack.s3.region,
        "AWS_ACCESS_KEY_ID": stack.s3.access_key, "AWS_SECRET_ACCESS_KEY": stack.s3.secret_key,
        "AWS_ALLOW_HTTP": "true"}).to_pyarrow_table().to_pylist()
    print(f"\nimported into Delta table {table} ({location}), {len(rows)} rows:")
    columns = ["genome_name", "completeness", "contamination", "cts_job_id"]
    print("  " + " | ".join(columns))
    for row in sorted(rows, key=lambda r: r["genome_name"]):
        print("  " + " | ".join(str(row[c]) for c in columns))
    for spec_uri in store.spec_uris(doc["id"]):
        print(f"\nspec:   {spec_uri}")
        for uri, result in zip(store.result_uris(spec_uri), store.results(spec_uri)):
            print(f"result: {uri} ({result.status.value}, exit {result.exit_code})")
    updates = [json.dumps(u.set_fields) for u in stack.cts.updates_for(doc["id"])]
    print("CTS admin meta updates:\n  " + "\n  ".join(updates))
    print(f"reproduce the import: python -m runner <spec>  (environment in "
          f"{(ROOT / '.stack' / 'env').relative_to(ROOT)})\n", flush=True)
