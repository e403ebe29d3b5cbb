"""What the benchmarks share: the machine's load, percentiles, the sample job, and a lane
(a topic, a consumer group, a spec prefix) worked by a dispatcher process."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402

from contract.store import SpecStore  # noqa: E402
from dispatcher.launchers import RUNNER_ENV  # noqa: E402
from stack import samples  # noqa: E402
from stack.dispatching import DispatcherProcess, dispatcher_config  # noqa: E402
from stack.local import LocalStack  # noqa: E402
from stack.spark_connect import DEFAULT_WARMUP_MERGES, warmup_count  # noqa: E402

#: The dispatcher tests' importers: ``quick`` does nothing, ``sleepy`` sleeps for the
#: seconds in its job id (``sleep-60-...``); neither starts Spark.
TEST_IMPORTERS = ROOT / "tests" / "fixtures" / "dispatcher_importers"
TEST_IMAGE = "example.org/csep-dispatch-tests/{}"


def add_server_warmup(parser: argparse.ArgumentParser) -> None:
    """``--server-warmup N``: the warm-up MERGEs of the stack's Spark Connect server before
    it serves; by default a deployed server's (``python -m stack.spark_connect``)."""
    parser.add_argument("--server-warmup", type=warmup_count, default=DEFAULT_WARMUP_MERGES,
                        metavar="N", help="warm-up MERGEs of the Spark Connect server "
                                          f"before it serves (default {DEFAULT_WARMUP_MERGES})")


def load() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (all cores; ``/proc/stat``:
    user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` and its descendants: the live ones, and those it (or
    they) waited for after they exited. Processes that exit between the reads are missed."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = sum(map(int, fields[11:15])) / tick  # utime stime cutime cstime
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(p, 0.0) for p in tree)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (linear interpolation between ranks)."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> str:
    return (f"p50 {percentile(values, 0.5):.2f}s p95 {percentile(values, 0.95):.2f}s "
            f"min {min(values):.2f}s max {max(values):.2f}s (n={len(values)})")


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM`` of ``/proc/<pid>/status``) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


class Lane:
    """A topic of its own (``partitions`` partitions), a consumer group, a spec prefix,
    and the dispatcher processes that work them. Close it (or use it as a context
    manager) to kill its dispatchers."""

    def __init__(self, stack: LocalStack, partitions: int = 1) -> None:
        self.stack = stack
        self.name = f"b{uuid.uuid4().hex[:10]}"
        self.topic, self.group = f"{self.name}-jobs", f"{self.name}-group"
        stack.kafka.create_topic(self.topic, partitions)
        stack.kafka.create_topic(f"{self.name}-dlq", 1)
        self.partitions = partitions
        self.directory = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=stack.base_dir))
        self.state_dir = self.directory / "state"
        self.state_dir.mkdir()
        self.store = SpecStore(f"s3://{stack.lake_bucket}/specs-{self.name}", stack.s3.client())
        self.producer = KafkaProducer(bootstrap_servers=stack.kafka.bootstrap, acks="all",
                                      linger_ms=0)
        #: A consumer per group whose commits are watched (never subscribed).
        self.watchers: dict[str, KafkaConsumer] = {}
        self.dispatchers: list[DispatcherProcess] = []

    def __enter__(self) -> Lane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dispatcher(self, env: dict[str, str] | None = None, profile: Path | None = None,
                   **overrides: Any) -> DispatcherProcess:
        """Start a dispatcher on this lane and wait until it serves ``/health`` (under
        cProfile, writing to ``profile`` at its exit, when given)."""
        settings = {"max_in_flight": 4, "shutdown_grace_seconds": 30,
                    "launcher": {"subprocess": {
                        "pass_env": [*RUNNER_ENV, "CSEP_TEST_STATE_DIR"]}},
                    **overrides}
        config = dispatcher_config(
            self.stack, topic=self.topic, dlq_topic=f"{self.name}-dlq", group_id=self.group,
            spec_store=self.store.base, metrics_port=DispatcherProcess.free_port(), **settings)
        process = DispatcherProcess(
            self.stack, self.directory / f"dispatcher-{len(self.dispatchers)}", config,
            env={"CSEP_IMPORTER_DIRS": f"@builtin:{TEST_IMPORTERS}",
                 "CSEP_TEST_STATE_DIR": str(self.state_dir), **(env or {})},
            profile=profile)
        self.dispatchers.append(process)
        process.start()
        process.wait_serving()
        return process

    def close(self) -> None:
        for process in self.dispatchers:
            try:
                process.stop(timeout=30)
            except Exception:  # a dispatcher that does not stop in time is killed
                process.kill()
        for watcher in self.watchers.values():
            watcher.close()
        self.producer.close()

    # -- events ---------------------------------------------------------------------------

    def sample_job(self, user: str = samples.CHECKM2.doc["user"]) -> dict:
        """A new CheckM2 job of the sample by ``user``: its report uploaded, the CTS
        double told."""
        return samples.checkm2_job(self.stack, job_id=f"{self.name}-{uuid.uuid4().hex[:8]}",
                                   user=user)

    def test_job(self, behaviour: str, job_id: str) -> dict:
        """A completed job of the test importer ``behaviour``, without outputs."""
        doc = samples.checkm2_job(self.stack, job_id=job_id)
        doc["image"] = {**doc["image"], "name": TEST_IMAGE.format(behaviour)}
        self.stack.cts.add_job(doc)
        return doc

    def publish(self, value: bytes, partition: int | None = None) -> tuple[TopicPartition, int]:
        """Send one message; its (partition, offset)."""
        sent = self.producer.send(self.topic, value=value, partition=partition).get(timeout=30)
        return TopicPartition(sent.topic, sent.partition), sent.offset

    def committed(self, partition: TopicPartition, group: str | None = None) -> int:
        """The commit on ``partition`` of ``group`` (the lane's, by default)."""
        group = group or self.group
        if group not in self.watchers:
            self.watchers[group] = KafkaConsumer(bootstrap_servers=self.stack.kafka.bootstrap,
                                                 group_id=group, enable_auto_commit=False)
        return self.watchers[group].committed(partition) or 0

    def wait_committed(self, partition: TopicPartition, offset: int, timeout: float = 600,
                       interval: float = 0.02, group: str | None = None) -> float:
        """Wait until the commit of ``group`` (the lane's, by default) on ``partition``
        passes ``offset``; the monotonic time it was first seen. Raises TimeoutError (with
        the dispatcher's log)."""
        deadline = time.monotonic() + timeout
        while self.committed(partition, group) <= offset:
            if time.monotonic() > deadline:
                log = self.dispatchers[-1].log() if self.dispatchers else ""
                raise TimeoutError(f"{partition}@{offset} not committed in {timeout}s\n{log}")
            time.sleep(interval)
        return time.monotonic()
