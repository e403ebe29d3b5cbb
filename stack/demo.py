"""The main job in one command: a CTS completion event imported end to end.

Starts the dispatcher (subprocess launcher) against a running local stack (its runners are
clients of the stack's Spark Connect server when it has one), replays the sample event
set ``stack/samples`` (:mod:`stack.replay`: the CheckM2 job registered with the CTS double,
its report uploaded, its completion event published on ``cts-jobs``), waits for the
dispatcher to commit it, and prints the imported rows, the spec and result in S3, and the
CTS meta updates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from contract.spec import namespace_prefix
from contract.store import SpecStore
from stack import replay, samples
from stack.dispatching import DispatcherProcess, dispatcher_config
from stack.local import LocalStack
from stack.paths import ROOT
from stack.state import StackState

TOPIC, DLQ_TOPIC, GROUP = replay.DEFAULT_TOPIC, replay.DEFAULT_DLQ_TOPIC, replay.DEFAULT_GROUP


def run_demo(stack: LocalStack, *, keep_running: bool, wait: Callable[[], None],
             timeout: float = 600.0, iceberg: bool = False) -> int:
    """``iceberg``: the runners use the ``iceberg`` table format on the sample user's
    warehouse, provisioned here first (over the stack's Spark Connect server, which must
    then be on ``iceberg`` too, or each with a classic Spark of its own)."""
    state = StackState.of(stack)
    stack.kafka.create_topic(TOPIC, 3)
    stack.kafka.create_topic(DLQ_TOPIC, 1)
    store = SpecStore(f"s3://{stack.lake_bucket}/specs", stack.s3.client())
    config = dispatcher_config(stack, topic=TOPIC, dlq_topic=DLQ_TOPIC, group_id=GROUP,
                               spec_store=store.base, metrics_port=DispatcherProcess.free_port())
    # Runners inherit the dispatcher's environment: with the stack's Connect server they
    # are its clients, otherwise each starts a classic Spark of its own.
    runner_env = stack.connect_runner_env() if stack.spark_connect else None
    if iceberg:
        stack.create_iceberg_catalog(samples.CHECKM2.doc["user"])
        if stack.spark_connect and stack.table_format != "iceberg":
            raise ValueError("an Iceberg demo needs the stack's Spark Connect server on "
                             "iceberg: LocalStack(table_format='iceberg')")
        runner_env = (stack.connect_runner_env() if stack.spark_connect
                      else stack.iceberg_runner_env())
    dispatcher = DispatcherProcess(stack, stack.base_dir / "dispatcher", config,
                                   env=runner_env).start()
    try:
        dispatcher.wait_serving()
        print(f"{'dispatcher':>22}: pid {dispatcher.process.pid}, log {dispatcher.log_path}")
        spark = stack.spark_connect.url if stack.spark_connect else "local[*] per runner"
        print(f"{'runners use Spark':>22}: {spark}")
        if iceberg:
            print(f"{'iceberg rest catalog':>22}: {stack.s3.iceberg_url}")
        metrics = f"http://127.0.0.1:{config['metrics_port']}/metrics"
        print(f"{'metrics and health':>22}: {metrics}, /health")
        print(f"replaying the event set {samples.HERE.relative_to(ROOT)}", flush=True)
        published = time.monotonic()
        [report] = replay.replay(state, samples.HERE, topic=TOPIC, dlq_topic=DLQ_TOPIC,
                                 group=GROUP, timeout=timeout,
                                 alive=lambda: dispatcher.process.poll() is None,
                                 out=lambda line: print(line, flush=True))
        if report.outcome != "imported":
            print(f"dispatcher log:\n{dispatcher.log()}")
            return 1
        print(f"imported and committed {time.monotonic() - published:.1f}s after publishing")
        _show(stack, store, samples.CHECKM2.doc, iceberg=iceberg)
        if keep_running:
            print("stack and dispatcher running; publish more events on 'cts-jobs' or "
                  "replay an event set (python -m stack replay DIR). Ctrl-C stops them",
                  flush=True)
            wait()
    finally:
        status = dispatcher.stop()
        print(f"dispatcher stopped (exit status {status})")
    return 0


def _show(stack: LocalStack, store: SpecStore, doc: dict, iceberg: bool = False) -> None:
    if iceberg:
        table = "checkm2.quality_report"
        found = stack.iceberg_catalog(doc["user"]).load_table(table)
        location = found.location()
        rows = found.scan().to_arrow().to_pylist()
        print(f"\nimported into Iceberg table {table} in the catalog of user "
              f"{doc['user']} ({location}), {len(rows)} rows:")
    else:

        table = f"{namespace_prefix(doc['user'])}checkm2.quality_report"
        database, name = table.split(".")
        location = f"s3://{stack.lake_bucket}/warehouse/{database}.db/{name}"
        rows = stack.delta_rows(f"{database}.db/{name}")
        print(f"\nimported into Delta table {table} ({location}), {len(rows)} rows:")
    columns = ["genome_name", "completeness", "contamination", "cts_job_id"]
    print("  " + " | ".join(columns))
    for row in sorted(rows, key=lambda r: r["genome_name"]):
        print("  " + " | ".join(str(row[c]) for c in columns))
    for spec_uri in store.spec_uris(doc["id"]):
        print(f"\nspec:   {spec_uri}")
        for uri, result in zip(store.result_uris(spec_uri), store.results(spec_uri), strict=False):
            print(f"result: {uri} ({result.status.value}, exit {result.exit_code})")
    updates = [json.dumps(u.set_fields) for u in stack.cts.updates_for(doc["id"])]
    print("CTS admin meta updates:\n  " + "\n  ".join(updates))
    print(f"reproduce the import: python -m runner <spec>  (environment in "
          f"{(ROOT / '.stack' / 'env').relative_to(ROOT)})\n", flush=True)
