"""Chaos: at-least-once with idempotent imports, under kills, restarts and duplicates.

    python benchmarks/chaos.py [--events 500] [--kills 20] [--broker-restarts 2]
                               [--s3-restarts 1] [--dispatchers 2] [--partitions 4]

Starts the local stack, then publishes a mix of events (imports, states other than
complete, jobs no importer is registered for, jobs whose data is refused, and duplicate
announcements of the same completion on other partitions) while dispatchers in one
consumer group work them and a chaos loop SIGKILLs and restarts a dispatcher at random
moments, restarts the Kafka broker and the S3 server. The imports use a light importer
that MERGEs one row per job into a Delta table with delta-rs, so the run takes minutes.

When every offset is committed it reads the table back with delta-rs, the DLQ topic and
the audit trail, and prints one line:

    chaos: events N, kills K, broker restarts B, lost 0, duplicate rows 0,
           dead-lettered for infrastructure 0, audit mismatches 0

exiting 1 if a count that must be zero is not (``lost``: an import without its row, a
refused job not dead-lettered, an event without its outcome; ``audit mismatches``: a spec
missing, an attempt claimed without a result, a last result that is not the job's
outcome).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from contract import claim as claims  # noqa: E402
from contract.store import SpecStore  # noqa: E402
from stack.dispatching import DispatcherProcess, dispatcher_config  # noqa: E402
from stack.local import LocalStack  # noqa: E402

IMPORTERS = ROOT / "benchmarks" / "chaos_importers"
IMAGE = "example.org/csep-chaos/import"
NO_IMPORTER_IMAGE = "example.org/csep-chaos/unregistered"
NOT_COMPLETE = ["created", "job_submitted", "upload_submitted", "error", "canceled"]


@attrs.frozen
class Sizes:
    events: int = 500
    kills: int = 20
    broker_restarts: int = 2
    s3_restarts: int = 1
    dispatchers: int = 2
    partitions: int = 4
    seed: int = 20261124
    timeout_seconds: float = 1800.0
    #: The dispatchers' and runners' CSEP_LOG_LEVEL (INFO to follow each event).
    log_level: str = "WARNING"


@attrs.define
class Report:
    events: int = 0
    kills: int = 0
    broker_restarts: int = 0
    s3_restarts: int = 0
    lost: int = 0
    duplicate_rows: int = 0
    dead_lettered_for_infrastructure: int = 0
    audit_mismatches: int = 0
    seconds: float = 0.0
    problems: list[str] = attrs.Factory(list)
    #: The audit trail of each job behind a problem (first five): what to read first.
    trails: list[str] = attrs.Factory(list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicate_rows or self.dead_lettered_for_infrastructure
                    or self.audit_mismatches)

    def line(self) -> str:
        return (f"chaos: events {self.events}, kills {self.kills}, broker restarts "
                f"{self.broker_restarts}, lost {self.lost}, duplicate rows "
                f"{self.duplicate_rows}, dead-lettered for infrastructure "
                f"{self.dead_lettered_for_infrastructure}, audit mismatches "
                f"{self.audit_mismatches}")


@attrs.frozen
class Plan:
    """What is published, and what each job must end as."""

    messages: list[tuple[int, dict]]      # (partition, value), in publishing order
    imports: list[str]                    # jobs that must have exactly one row
    refused: list[str]                    # jobs that must be dead-lettered (bad data)
    no_importer: list[str]                # jobs acknowledged as no-ops


def plan(sizes: Sizes, run: str) -> Plan:
    rng = random.Random(sizes.seed)
    messages, imports, refused, no_importer = [], [], [], []

    def complete(job_id: str) -> dict:
        return {"job_id": job_id, "state": "complete", "time": "2026-11-20T10:15:00+00:00",
                "trans_id": f"t-{job_id}"}

    while len(messages) < sizes.events:
        kind = rng.choices(["import", "duplicate", "state", "none", "bad"],
                           [50, 10, 20, 10, 10])[0]
        partition = rng.randrange(sizes.partitions)
        job_id = f"{run}-{len(messages)}"
        if kind in ("import", "duplicate"):
            imports.append(job_id)
            messages.append((partition, complete(job_id)))
            if kind == "duplicate":  # the same completion again, on another partition
                other = (partition + 1 + rng.randrange(sizes.partitions - 1)) % sizes.partitions
                messages.append((other, complete(job_id)))
        elif kind == "state":
            messages.append((partition, {**complete(job_id), "state": rng.choice(NOT_COMPLETE)}))
        elif kind == "none":
            no_importer.append(job_id)
            messages.append((partition, complete(job_id)))
        else:
            job_id = f"bad-{job_id}"
            refused.append(job_id)
            messages.append((partition, complete(job_id)))
    return Plan(messages, imports, refused, no_importer)


def _job(job_id: str, image: str) -> dict:
    return {"id": job_id, "user": "chaos", "state": "complete",
            "image": {"name": image, "digest": "sha256:00", "tag": "1"},
            "job_input": {"params": {"args": []}}, "input_file_count": 0,
            "output_file_count": 0, "outputs": [],
            "transition_times": [{"state": "complete", "time": "2026-11-20T10:15:00+00:00",
                                  "trans_id": f"t-{job_id}"}], "admin_meta": {}}


class Chaos:
    """One chaos run on ``stack``, with its own topics, group, table and spec prefix."""

    def __init__(self, stack: LocalStack, workdir: Path, sizes: Sizes) -> None:
        self.stack, self.workdir, self.sizes = stack, workdir, sizes
        self.run = f"c{uuid.uuid4().hex[:8]}"
        self.topic, self.dlq, self.group = f"{self.run}-jobs", f"{self.run}-dlq", f"{self.run}-g"
        self.table = f"s3://{stack.lake_bucket}/chaos/{self.run}/imports"
        self.store = SpecStore(f"s3://{stack.lake_bucket}/chaos/{self.run}/specs",
                               stack.s3.client())
        self.report = Report()
        self.dispatchers: list[DispatcherProcess] = []
        self.rng = random.Random(sizes.seed + 1)
        self._lock = threading.Lock()

    # -- the run --------------------------------------------------------------------------

    def __call__(self) -> Report:
        started = time.monotonic()
        the_plan = plan(self.sizes, self.run)
        self.report.events = len(the_plan.messages)
        self._prepare(the_plan)
        self.dispatchers = [self._start(i) for i in range(self.sizes.dispatchers)]
        publisher = threading.Thread(target=self._publish, args=(the_plan,), daemon=True)
        publisher.start()
        try:
            self._chaos(publisher)
            self._wait_committed(deadline=started + self.sizes.timeout_seconds)
        finally:
            for dispatcher in self.dispatchers:
                try:
                    dispatcher.stop(timeout=90)
                except Exception:  # a dispatcher that would not stop is killed
                    dispatcher.kill()
        self._verify(the_plan)
        self.report.seconds = time.monotonic() - started
        return self.report

    def _prepare(self, the_plan: Plan) -> None:
        import pyarrow as pa
        from deltalake import write_deltalake

        sys.path.insert(0, str(IMPORTERS))
        from csep_chaos import storage_options

        self.stack.kafka.create_topic(self.topic, self.sizes.partitions)
        self.stack.kafka.create_topic(self.dlq, 1)
        for job_id in the_plan.imports + the_plan.refused:
            self.stack.cts.add_job(_job(job_id, IMAGE))
        for job_id in the_plan.no_importer:
            self.stack.cts.add_job(_job(job_id, NO_IMPORTER_IMAGE))
        empty = pa.table({"job_id": pa.array([], pa.string()),
                          "completion_time": pa.array([], pa.string()),
                          "pid": pa.array([], pa.int64())})
        write_deltalake(self.table, empty, mode="append",
                        storage_options=storage_options(self.stack.runner_env()))

    def _start(self, index: int) -> DispatcherProcess:
        config = dispatcher_config(
            self.stack, topic=self.topic, dlq_topic=self.dlq, group_id=self.group,
            spec_store=self.store.base, metrics_port=DispatcherProcess.free_port(),
            retry={"max_attempts": 3, "initial_backoff_seconds": 0.5, "max_backoff_seconds": 2,
                   "jitter_seconds": 0.2},
            max_in_flight=4, attempt_lease_seconds=5, shutdown_grace_seconds=30,
            infrastructure_budget_seconds=600,
            kafka={"bootstrap_servers": self.stack.kafka.bootstrap, "topic": self.topic,
                   "dlq_topic": self.dlq, "group_id": self.group,
                   "session_timeout_ms": 6000},
            launcher={"subprocess": {"pass_env": [
                "PATH", "HOME", "LANG", "LC_*", "PYTHONPATH", "VIRTUAL_ENV", "AWS_*",
                "CSEP_S3_*", "CSEP_IMPORTER_DIRS", "CSEP_CHAOS_TABLE", "CSEP_LOG_LEVEL"]}})
        process = DispatcherProcess(
            self.stack, self.workdir / f"dispatcher-{index}", config,
            env={"CSEP_IMPORTER_DIRS": str(IMPORTERS), "CSEP_CHAOS_TABLE": self.table,
                 "CSEP_LOG_LEVEL": self.sizes.log_level})
        process.start()
        process.wait_serving(timeout=60)
        return process

    def _publish(self, the_plan: Plan) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.stack.kafka.bootstrap, acks="all",
                                 retries=50, retry_backoff_ms=500, max_block_ms=120_000,
                                 delivery_timeout_ms=300_000, request_timeout_ms=20_000)
        try:
            for index, (partition, value) in enumerate(the_plan.messages):
                producer.send(self.topic, json.dumps(value).encode(), partition=partition)
                if index % 10 == 9:
                    time.sleep(0.05)  # a stream, not a burst: chaos lands mid-stream
            producer.flush(timeout=300)
        finally:
            producer.close()

    def _chaos(self, publisher: threading.Thread) -> None:
        sizes, report = self.sizes, self.report
        broker_at = {round((i + 1) * sizes.kills / (sizes.broker_restarts + 1))
                     for i in range(sizes.broker_restarts)}
        s3_at = {round((i + 1) * sizes.kills / (sizes.s3_restarts + 1)) + 1
                 for i in range(sizes.s3_restarts)}
        while report.kills < sizes.kills:
            time.sleep(self.rng.uniform(1.0, 4.0))
            index = self.rng.randrange(len(self.dispatchers))
            self.dispatchers[index].stop(sig=signal.SIGKILL)
            report.kills += 1
            if report.kills in broker_at:
                self.stack.kafka.restart()
                report.broker_restarts += 1
            if report.kills in s3_at:
                self.stack.s3.restart()
                report.s3_restarts += 1
            time.sleep(self.rng.uniform(0.0, 1.5))
            self.dispatchers[index] = self._start(index)
        publisher.join()

    def _wait_committed(self, deadline: float) -> None:
        from kafka import KafkaConsumer, TopicPartition

        partitions = [TopicPartition(self.topic, p) for p in range(self.sizes.partitions)]
        while time.monotonic() < deadline:
            consumer = KafkaConsumer(bootstrap_servers=self.stack.kafka.bootstrap,
                                     group_id=self.group, enable_auto_commit=False)
            try:
                ends = consumer.end_offsets(partitions)
                behind = {p.partition: ends[p] - (consumer.committed(p) or 0) for p in partitions}
            finally:
                consumer.close()
            if not any(behind.values()):
                return
            for i, dispatcher in enumerate(self.dispatchers):
                if dispatcher.process.poll() is not None:  # exited by itself: restart it
                    self.report.problems.append(
                        f"dispatcher {i} exited {dispatcher.process.returncode}")
                    self.dispatchers[i] = self._start(i)
            time.sleep(2)
        self.report.problems.append(f"offsets still uncommitted at the deadline: {behind}")

    # -- the verdict ----------------------------------------------------------------------

    def _verify(self, the_plan: Plan) -> None:
        from csep_chaos import storage_options
        from deltalake import DeltaTable

        report = self.report
        rows = DeltaTable(self.table, storage_options=storage_options(
            self.stack.runner_env())).to_pyarrow_table().column("job_id").to_pylist()
        counts = Counter(rows)
        report.duplicate_rows = sum(n - 1 for n in counts.values() if n > 1)
        missing_rows = [j for j in the_plan.imports if counts[j] == 0]
        letters = self._dead_letters()
        refused_letters = {j for j in letters if j in set(the_plan.refused)}
        infra = [j for j in letters if j not in set(the_plan.refused)]
        report.dead_lettered_for_infrastructure = len(infra)
        missing_letters = [j for j in the_plan.refused if j not in refused_letters]
        no_ops = {u.job_id for u in self.stack.cts.meta_updates
                  if "cse_event_processing_no_operation" in u.set_fields}
        missing_no_ops = [j for j in the_plan.no_importer if j not in no_ops]
        report.lost = (len(missing_rows) + len(missing_letters) + len(missing_no_ops)
                       + sum("uncommitted" in p for p in report.problems))
        for what, jobs in (("import without its row", missing_rows),
                           ("refused job not dead-lettered", missing_letters),
                           ("no-importer job without its no-op", missing_no_ops),
                           ("dead-lettered for infrastructure", infra)):
            report.problems += [f"{what}: {j}" for j in jobs[:10]]
        troubled = set(missing_rows) | set(infra)
        for job_id, outcome in [*((j, "succeeded") for j in the_plan.imports),
                                *((j, "bad_data") for j in the_plan.refused)]:
            problem = self._audit(job_id, outcome)
            if problem:
                report.audit_mismatches += 1
                report.problems.append(f"audit of {job_id}: {problem}")
                troubled.add(job_id)
        for job_id in sorted(troubled)[:5]:
            report.trails.append(self._trail(job_id))

    def _dead_letters(self) -> list[str]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.stack.kafka.bootstrap,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 consumer_timeout_ms=3000)
        consumer.assign([TopicPartition(self.dlq, 0)])
        try:
            jobs = []
            for record in consumer:
                try:
                    jobs.append(json.loads(record.value)["job_id"])
                except (ValueError, KeyError, TypeError):
                    jobs.append(repr(record.value[:80]))
            return jobs
        finally:
            consumer.close()

    def _trail(self, job_id: str) -> str:
        """Every claim and result of the job's spec, one line each, in attempt order."""
        spec_uri = self.store.spec_uri(job_id, f"t-{job_id}")
        lines = [f"trail of {job_id} ({spec_uri}):"]
        for uri in self.store.files(spec_uri):
            name = uri.rsplit("/", 1)[-1]
            try:
                text = self.store.read_text(uri)
                if name.startswith(claims.CLAIM_PREFIX):
                    claim = claims.from_yaml(text)
                    moves = "; ".join(f"taken over by {t.by} at {t.at:%H:%M:%S.%f} from "
                                      f"{t.previous_owner}" for t in claim.takeovers)
                    lines.append(f"  {name}: owner {claim.owner}, claimed "
                                 f"{claim.claimed_at:%H:%M:%S.%f}"
                                 + (f"; {moves}" if moves else ""))
                elif name.startswith("result-"):
                    from contract import result as results
                    r = results.from_yaml(text)
                    lines.append(
                        f"  {name}: {r.status.value} exit {r.exit_code} by {r.written_by}"
                        f" {r.started_at:%H:%M:%S.%f}-{r.ended_at:%H:%M:%S.%f}"
                        f" service {r.service} {r.error_type}: {(r.message or '')[:400]!r}"
                        + (f"\n    tail: {(r.traceback or '')[-1500:]!r}" if r.status.value
                           != "succeeded" else ""))
                else:
                    lines.append(f"  {name}")
            except Exception as error:  # a trail is for reading: show what cannot be read
                lines.append(f"  {name}: unreadable ({error})")
        return "\n".join(lines)

    def _audit(self, job_id: str, outcome: str) -> str | None:
        spec_uri = self.store.spec_uri(job_id, f"t-{job_id}")
        names = [u.rsplit("/", 1)[-1] for u in self.store.files(spec_uri)]
        if "spec.yaml" not in names:
            return "no spec"
        attempts = [n for n in names if n.startswith(claims.CLAIM_PREFIX)]
        for name in attempts:
            number = int(name[len(claims.CLAIM_PREFIX):-len(".yaml")])
            if claims.result_name_for(number) not in names:
                return f"{name} has no result"
        results = self.store.results(spec_uri)
        if not results:
            return "no result"
        if results[-1].status.value != outcome:
            return f"last result {results[-1].status.value}, expected {outcome}"
        if len(results) != len(attempts):
            return f"{len(attempts)} attempt(s) claimed, {len(results)} result(s)"
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/chaos.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for field in attrs.fields(Sizes):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                            default=field.default)
    parser.add_argument("--keep-logs", type=Path, metavar="DIR",
                        help="when a count is not zero, copy the dispatchers' logs here")
    args = parser.parse_args(argv)
    sizes = Sizes(**{f.name: getattr(args, f.name) for f in attrs.fields(Sizes)})
    with LocalStack() as stack, tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
        report = Chaos(stack, Path(workdir), sizes)()
        if not report.ok and args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in Path(workdir).glob("dispatcher-*/dispatcher.log"):
                shutil.copy(log, args.keep_logs / f"{log.parent.name}.log")
            print(f"dispatcher logs kept in {args.keep_logs}", file=sys.stderr)
    for problem in report.problems[:30]:
        print(f"  {problem}", file=sys.stderr)
    for trail in report.trails:
        print(trail, file=sys.stderr)
    print(f"chaos run: {report.seconds:.0f} s, {report.s3_restarts} S3 restart(s)",
          file=sys.stderr)
    print(report.line())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
