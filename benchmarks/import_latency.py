"""Import latency: a CheckM2 completion event published -> its offset committed, through
one dispatcher, one event at a time.

    python benchmarks/import_latency.py [--events 20] [--warmup 5] [--skip-classic]
                                        [--server-warmup 30] [--importer YAML ...]
                                        [--format delta|iceberg ...]

In one run, on one local stack:

- warm: runners are Spark Connect clients of the stack's server (``sc://``);
- classic: each runner starts its own ``CSEP_SPARK_MASTER=local[*]`` Spark;
- reference: a bare pyspark script, in a fresh process, reading the same report and
  MERGEing it into a table of its own, over Connect and in ``local[*]``: what Spark alone
  costs, with no dispatcher, runner, spec or checks.

Each mode measures, on each ``--format`` (default ``delta``; give it twice to compare
``delta`` and ``iceberg`` in one run), the built-in CheckM2 importer and each
``--importer`` (default: the CheckM2 importer written in that format's own style, the
upstream one of ``examples/upstream_style`` on Delta, the Iceberg lakehouse's of
``tests/fixtures/iceberg_importers`` on Iceberg; a YAML's directory is its dispatcher's
whole registry; its events are the same sample job announced with the importer's image,
imported by a user of its own). On ``iceberg`` the warm path has a Spark Connect server
of its own on Iceberg, each user a warehouse in the stack's REST catalog, and the
reference MERGEs into an Iceberg table. A mode runs in rounds: one event of
each importer (each has its own dispatcher), then one reference process, so that all of
them meet the server and the machine in the same state. Each importer's median is also
printed as a multiple of the reference's of the same mode and format, and with both
formats each importer's Iceberg median as a multiple of its Delta median.

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
import json
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
#: The CheckM2 importer in the Iceberg lakehouse's style (bare names, SQL MERGE INTO).
ICEBERG_STYLE = ROOT / "tests" / "fixtures" / "iceberg_importers" / "iceberg_checkm2.yaml"
#: Each table format's own style of importer, measured by default beside the built-in.
STYLE = {"delta": UPSTREAM_STYLE, "iceberg": ICEBERG_STYLE}

# The reference: the read and the MERGE of importers/checkm2.py, by hand. Its settings
# come in the environment (the catalog's credential among them): the JVM's start-up
# settings of a classic Spark, then those set on the session once it is open.
BARE = """
import json, os, sys
from pyspark.sql import SparkSession
url, report, table_format = sys.argv[1], sys.argv[2], sys.argv[3]
start_conf = json.loads(os.environ.pop("BENCH_START_CONF", "{}"))
session_conf = json.loads(os.environ.pop("BENCH_SESSION_CONF", "{}"))
if url.startswith("sc://"):
    spark = SparkSession.builder.remote(url).getOrCreate()
else:
    builder = SparkSession.builder.master(url)
    for key, value in start_conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
for key, value in session_conf.items():
    spark.conf.set(key, value)
spark.sql("CREATE NAMESPACE IF NOT EXISTS bench_reference")
spark.sql("CREATE TABLE IF NOT EXISTS bench_reference.quality_report "
          "(genome_name STRING, completeness DOUBLE, contamination DOUBLE) USING "
          + table_format)
(spark.read.option("header", True).option("sep", "\\t").csv(report)
 .selectExpr("Name AS genome_name", "CAST(Completeness AS DOUBLE) AS completeness",
             "CAST(Contamination AS DOUBLE) AS contamination")
 .createOrReplaceTempView("source"))
spark.sql("MERGE INTO bench_reference.quality_report t USING source s "
          "ON t.genome_name = s.genome_name WHEN MATCHED THEN UPDATE SET * "
          "WHEN NOT MATCHED THEN INSERT *").collect()
spark.stop()
"""
#: The reference's user on ``iceberg`` (its warehouse; the job is the sample's).
REFERENCE_USER = "benchreference"


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
        start: dict[str, str] = {}
        session: dict[str, str] = {}
        user = REFERENCE_USER if settings.is_iceberg else None
        if user is not None:
            stack.create_iceberg_catalog(user)
        if master.startswith("sc://"):
            session = settings.session_conf(user) if user is not None else {}
        else:
            start = settings.spark_conf(user=user)
            session = settings.catalog_secrets(user) if user is not None else {}
        doc = samples.checkm2_job(stack, job_id="bench-reference")
        self.command = [sys.executable, "-c", BARE, master,
                        f"s3a://{doc['outputs'][0]['file']}", settings.table_format]
        self.env = subprocess_env({**env, **settings.jvm_environment(),
                                   "BENCH_START_CONF": json.dumps(start),
                                   "BENCH_SESSION_CONF": json.dumps(session)})

    def __call__(self) -> float:
        """Seconds of one process, start to exit."""
        started = time.monotonic()
        done = subprocess.run(self.command, env=self.env, capture_output=True, text=True,
                              timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"bare pyspark failed:\n{done.stderr[-3000:]}")
        return time.monotonic() - started


@attrs.frozen
class Column:
    """What a mode measures on one table format: its runners' environment, the reference
    process's Spark and the importers."""

    table_format: str
    env: dict[str, str]
    master: str
    importers: list[Measured]


REFERENCE = "reference: bare pyspark"


def measure(stack: LocalStack, columns: list[Column], events: int,
            warmup: int) -> dict[tuple[str, str], list[float]]:
    """Seconds of each importer's events and of the reference, by (table format, label),
    after ``warmup`` rounds.

    A round is one event of each importer, then one reference process, on each format in
    turn: each importer has its dispatcher (idle between its events), so all of them meet
    the same servers and the same load, whatever the machine does meanwhile."""
    seconds: dict[tuple[str, str], list[float]] = {}
    with contextlib.ExitStack() as lanes:
        workers = []
        for column in columns:
            for importer in column.importers:
                lane = lanes.enter_context(Lane(stack))
                lane.dispatcher(env={**column.env, "CSEP_IMPORTER_DIRS": importer.dirs},
                                max_in_flight=1)
                workers.append(((column.table_format, importer.label),
                                functools.partial(event_to_commit, lane, importer)))
            workers.append(((column.table_format, REFERENCE),
                            Bare(stack, column.master, column.env)))
        seconds = {key: [] for key, _ in workers}
        for n in range(events + warmup):
            counted = n >= warmup
            for key, run in workers:
                took = run()
                if counted:
                    seconds[key].append(took)
                print(f"  {key[0]}, {key[1]}: {took:.2f}s{'' if counted else ' (warm-up)'}  "
                      f"{load()}", flush=True)
    return seconds


def importers_of(table_format: str, given: list[Path] | None) -> list[Measured]:
    """The importers measured on ``table_format``: the built-in one and ``given`` (by
    default the format's own style)."""
    return [Measured.builtin(), *(Measured.from_yaml(path, n)
                                  for n, path in enumerate(given or [STYLE[table_format]], 1))]


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
                             "default: the format's own style, "
                             f"{UPSTREAM_STYLE.relative_to(ROOT)} on delta, "
                             f"{ICEBERG_STYLE.relative_to(ROOT)} on iceberg")
    parser.add_argument("--format", dest="formats", action="append",
                        choices=tuple(STYLE), metavar="FORMAT",
                        help="a table format to measure, delta or iceberg; give it twice to "
                             "compare them in one run (default: delta)")
    add_server_warmup(parser)
    args = parser.parse_args()
    formats = list(dict.fromkeys(args.formats or ["delta"]))
    # A bad --importer fails here, before the stack starts.
    importers = {table_format: importers_of(table_format, args.importer)
                 for table_format in formats}
    figures: dict[str, list[float]] = {}
    ratios: list[str] = []
    with contextlib.ExitStack() as running:
        stack = running.enter_context(LocalStack(
            spark_connect="delta" in formats, spark_connect_warmup=args.server_warmup))
        for importer in importers.get("iceberg", []):
            stack.create_iceberg_catalog(importer.user)
        warm, classic = [], []
        for table_format in formats:
            if table_format == "delta":
                env, url = stack.connect_runner_env(), stack.spark_connect.url
                classic_env = stack.runner_env()
            else:
                server = stack.spark_connect_server(
                    "iceberg", "spark-connect-iceberg", warmup_merges=args.server_warmup)
                server.start()
                running.callback(server.stop)
                env = {**stack.iceberg_runner_env(), "CSEP_SPARK_MASTER": server.url}
                url, classic_env = server.url, stack.iceberg_runner_env()
            warm.append(Column(table_format, env, url, importers[table_format]))
            classic.append(Column(table_format, {**classic_env,
                                                 "CSEP_SPARK_MASTER": "local[*]"},
                                  "local[*]", importers[table_format]))
        modes = [("warm", "Connect", warm, max(1, args.warmup))]
        if not args.skip_classic:
            modes.append(("classic", "local[*]", classic, 1))
        for mode, spark, columns, warmup in modes:
            measured_here = "; ".join(
                f"{c.table_format}: {', '.join(i.label for i in c.importers)}" for c in columns)
            print(f"{mode} ({spark}), {measured_here} through the dispatcher, and the "
                  f"reference, in rounds; {load()}", flush=True)
            measured = measure(stack, columns, args.events, warmup)
            for (table_format, label), seconds in measured.items():
                figures[f"{mode} ({spark}), {table_format}, {label}"] = seconds
            for (table_format, label), seconds in measured.items():
                if label != REFERENCE:
                    bare = median(measured[table_format, REFERENCE])
                    ratios.append(f"{mode}, {table_format}, {label}: "
                                  f"{median(seconds) / bare:.2f}x the reference's median")
            if len(formats) > 1:
                for label in {label for _, label in measured}:
                    if ("delta", label) in measured and ("iceberg", label) in measured:
                        ratio = (median(measured["iceberg", label])
                                 / median(measured["delta", label]))
                        ratios.append(f"{mode}, {label}: iceberg's median {ratio:.2f}x "
                                      "delta's")
    print("event -> commit through the dispatcher; the reference: read + MERGE in a fresh "
          "process")
    for name, seconds in figures.items():
        print(f"{name:<62} {summary(seconds)}")
    for line in ratios:
        print(line)
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
