"""Import latency: a CheckM2 completion event published -> its offset committed, through
one dispatcher, one event at a time.

    python benchmarks/import_latency.py [--events 20] [--warmup 5] [--skip-classic]
                                        [--server-warmup 30] [--importer YAML ...]

In one run, on one local stack:

- warm: runners are Spark Connect clients of the stack's server (``sc://``);
- classic: each runner starts its own ``CSEP_SPARK_MASTER=local[*]`` Spark;
- reference: a bare pyspark script, in a fresh process, reading the same report and
  MERGEing it into a table of its own, over Connect and in ``local[*]``: what Spark alone
  costs, with no dispatcher, runner, spec or checks.

Each mode measures the built-in CheckM2 importer and each ``--importer`` (default: the
upstream-style CheckM2 importer of ``examples/upstream_style``; a YAML's directory is its
dispatcher's whole registry; its events are the same sample job announced with the
importer's image, imported by a user of its own). A mode runs in rounds: one event of
each importer (each has its own dispatcher), then one reference process, so that all of
them meet the server and the machine in the same state. Each importer's median is also
printed as a multiple of the reference's of the same mode.

The first round of each mode warms the path (the tables' creation) and is not counted;
on the warm path the first ``--warmup`` rounds are not counted either (a server just
started runs its first MERGEs several times slower than one that has been importing for
a while: class loading, then the JIT; the server's own ``--server-warmup`` MERGEs before
it serves, as a deployed one runs by default, take most of that). Prints p50 and p95 of
each; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import subprocess
import sys
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import Lane, add_server_warmup, load, median, summary  # noqa: E402
from registry import Registry, RegistryError  # noqa: E402
from stack import samples  # noqa: E402
from stack.local import LocalStack, subprocess_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: The CheckM2 importer written as third parties write them, measured by default.
UPSTREAM_STYLE = ROOT / "examples" / "upstream_style" / "upstream_checkm2.yaml"

# The reference: the read and the MERGE of importers/checkm2.py, by hand.
BARE = """
import sys
from pyspark.sql import SparkSession
url, report, conf = sys.argv[1], sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:])
if url.startswith("sc://"):
    spark = SparkSession.builder.remote(url).getOrCreate()
else:
    builder = SparkSession.builder.master(url)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
spark.sql("CREATE DATABASE IF NOT EXISTS bench_reference")
spark.sql("CREATE TABLE IF NOT EXISTS bench_reference.quality_report "
          "(genome_name STRING, completeness DOUBLE, contamination DOUBLE) USING delta")
(spark.read.option("header", True).option("sep", "\\t").csv(report)
 .selectExpr("Name AS genome_name", "CAST(Completeness AS DOUBLE) AS completeness",
             "CAST(Contamination AS DOUBLE) AS contamination")
 .createOrReplaceTempView("source"))
spark.sql("MERGE INTO bench_reference.quality_report t USING source s "
          "ON t.genome_name = s.genome_name WHEN MATCHED THEN UPDATE SET * "
          "WHEN NOT MATCHED THEN INSERT *").collect()
spark.stop()
"""


@attrs.frozen
class Measured:
    """An importer the benchmark runs: its registry (``CSEP_IMPORTER_DIRS``), the image its
    events are announced with, and the user whose tables it imports into."""

    label: str
    dirs: str
    image: str
    user: str

    @classmethod
    def builtin(cls) -> Measured:
        return cls("built-in checkm2", "@builtin", samples.CHECKM2.doc["image"]["name"],
                   "benchbuiltin")

    @classmethod
    def from_yaml(cls, path: Path, index: int) -> Measured:
        """The importer of the YAML at ``path``; SystemExit naming the problem when the
        registry refuses its directory or the importer is not a CTS importer."""
        try:
            registry = Registry.load([path.parent], check="find")
        except RegistryError as error:
            raise SystemExit(f"--importer {path}: {'; '.join(error.problems)}") from error
        entry = next((e for e in registry.entries if e.source.resolve() == path.resolve()),
                     None)
        if entry is None or entry.image is None:
            raise SystemExit(f"--importer {path}: not a CTS importer's YAML (source: cts, "
                             "with an image)")
        return cls(entry.name, str(path.parent.resolve()), entry.image,
                   f"benchimporter{index}")


def event_to_commit(lane: Lane, importer: Measured) -> float:
    """Seconds from publishing a new sample job's completion to its offset's commit."""
    doc = lane.sample_job(importer.user)
    if doc["image"]["name"] != importer.image:
        doc["image"] = {**doc["image"], "name": importer.image}
        lane.stack.cts.add_job(doc)
    published = time.monotonic()
    partition, offset = lane.publish(samples.completion_event(doc))
    return lane.wait_committed(partition, offset) - published


class Bare:
    """The reference: a bare pyspark process reading the sample report and MERGEing it."""

    def __init__(self, stack: LocalStack, master: str, env: dict[str, str]) -> None:
        from runner.spark import SparkSettings

        settings = SparkSettings.from_env(env)
        conf = [] if master.startswith("sc://") else [
            f"{k}={v}" for k, v in settings.spark_conf().items()]
        doc = samples.checkm2_job(stack, job_id="bench-reference")
        self.command = [sys.executable, "-c", BARE, master,
                        f"s3a://{doc['outputs'][0]['file']}", *conf]
        self.env = subprocess_env({**env, **settings.jvm_environment()})

    def __call__(self) -> float:
        """Seconds of one process, start to exit."""
        started = time.monotonic()
        done = subprocess.run(self.command, env=self.env, capture_output=True, text=True,
                              timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"bare pyspark failed:\n{done.stderr[-3000:]}")
        return time.monotonic() - started


def measure(stack: LocalStack, env: dict[str, str], master: str,
            importers: list[Measured], events: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each importer's events and of the reference, after ``warmup`` rounds.

    A round is one event of each importer, then one reference process: each importer has
    its dispatcher (idle between its events), so all of them meet the same server and the
    same load, whatever the machine does meanwhile."""
    reference = "reference: bare pyspark"
    seconds: dict[str, list[float]] = {i.label: [] for i in importers} | {reference: []}
    with contextlib.ExitStack() as lanes:
        workers = []
        for importer in importers:
            lane = lanes.enter_context(Lane(stack))
            lane.dispatcher(env={**env, "CSEP_IMPORTER_DIRS": importer.dirs}, max_in_flight=1)
            workers.append((importer.label, functools.partial(event_to_commit, lane, importer)))
        workers.append((reference, Bare(stack, master, env)))
        for n in range(events + warmup):
            counted = n >= warmup
            for label, run in workers:
                took = run()
                if counted:
                    seconds[label].append(took)
                print(f"  {label}: {took:.2f}s{'' if counted else ' (warm-up)'}  {load()}",
                      flush=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5,
                        help="rounds not counted on the warm path (at least 1)")
    parser.add_argument("--skip-classic", action="store_true",
                        help="only the warm path and its reference")
    parser.add_argument("--importer", type=Path, action="append", metavar="YAML",
                        help="also measure this importer (its directory is the registry); "
                             f"default: {UPSTREAM_STYLE.relative_to(ROOT)}")
    add_server_warmup(parser)
    args = parser.parse_args()
    importers = [Measured.builtin(), *(Measured.from_yaml(path, n)
                                       for n, path in enumerate(
                                           args.importer or [UPSTREAM_STYLE], 1))]
    figures: dict[str, list[float]] = {}
    ratios: list[str] = []
    with LocalStack(spark_connect=True, spark_connect_warmup=args.server_warmup) as stack:
        modes = [("warm", "Connect", stack.connect_runner_env(), stack.spark_connect.url,
                  max(1, args.warmup))]
        if not args.skip_classic:
            modes.append(("classic", "local[*]",
                          {**stack.runner_env(), "CSEP_SPARK_MASTER": "local[*]"},
                          "local[*]", 1))
        for mode, spark, env, master, warmup in modes:
            print(f"{mode} ({spark}): {', '.join(i.label for i in importers)} through the "
                  f"dispatcher, and the reference, in rounds; {load()}", flush=True)
            measured = measure(stack, env, master, importers, args.events, warmup)
            *runs, (_, bare_seconds) = measured.items()
            for label, seconds in measured.items():
                figures[f"{mode} ({spark}), {label}"] = seconds
            ratios.extend(f"{mode}, {label}: {median(seconds) / median(bare_seconds):.2f}x "
                          "the reference's median" for label, seconds in runs)
    print("event -> commit through the dispatcher; the reference: read + MERGE in a fresh "
          "process")
    for name, seconds in figures.items():
        print(f"{name:<52} {summary(seconds)}")
    for line in ratios:
        print(line)
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
