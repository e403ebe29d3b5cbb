"""Import latency: a CheckM2 completion event published -> its offset committed, through
one dispatcher, one event at a time.

    python benchmarks/import_latency.py [--events 20] [--warmup 5] [--skip-classic]
                                        [--server-warmup 30]

In one run, on one local stack:

- warm: runners are Spark Connect clients of the stack's server (``sc://``);
- classic: each runner starts its own ``CSEP_SPARK_MASTER=local[*]`` Spark;
- reference: a bare pyspark script, in a fresh process, reading the same report and
  MERGEing it into a table of its own, over Connect and in ``local[*]``: what Spark alone
  costs, with no dispatcher, runner, spec or checks.

The first event of each mode warms the path (the table's creation) and is not counted;
on the warm path the first ``--warmup`` events are not counted either (a server just
started runs its first MERGEs several times slower than one that has been importing for
a while: class loading, then the JIT; the server's own ``--server-warmup`` MERGEs before
it serves, as a deployed one runs by default, take most of that). Prints p50 and p95 of
each; asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import Lane, add_server_warmup, load, summary  # noqa: E402
from stack import samples  # noqa: E402
from stack.local import LocalStack, subprocess_env  # noqa: E402

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


def dispatched(stack: LocalStack, events: int, env: dict[str, str],
               warmup: int = 1) -> list[float]:
    """Seconds from publishing to the commit of each event after the ``warmup`` first."""
    with Lane(stack) as lane:
        lane.dispatcher(env=env, max_in_flight=1)
        seconds = []
        for n in range(events + warmup):
            doc = lane.sample_job()
            published = time.monotonic()
            partition, offset = lane.publish(samples.completion_event(doc))
            committed = lane.wait_committed(partition, offset)
            counted = n >= warmup
            if counted:
                seconds.append(committed - published)
            print(f"  {committed - published:.2f}s{'' if counted else ' (warm-up)'}  "
                  f"{load()}", flush=True)
        return seconds


def bare(stack: LocalStack, events: int, master: str, env: dict[str, str]) -> list[float]:
    """Seconds of each bare pyspark process after the first."""
    from runner.spark import SparkSettings

    settings = SparkSettings.from_env(env)
    conf = [] if master.startswith("sc://") else [
        f"{k}={v}" for k, v in settings.spark_conf().items()]
    doc = samples.checkm2_job(stack, job_id="bench-reference")
    report = f"s3a://{doc['outputs'][0]['file']}"
    process_env = subprocess_env({**env, **settings.jvm_environment()})
    seconds = []
    for n in range(events + 1):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", BARE, master, report, *conf],
                              env=process_env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"bare pyspark failed:\n{done.stderr[-3000:]}")
        if n:
            seconds.append(time.monotonic() - started)
            print(f"  {seconds[-1]:.2f}s  {load()}", flush=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5,
                        help="events not counted on the warm path (at least 1)")
    parser.add_argument("--skip-classic", action="store_true",
                        help="only the warm path and its reference")
    add_server_warmup(parser)
    args = parser.parse_args()
    figures = {}
    with LocalStack(spark_connect=True, spark_connect_warmup=args.server_warmup) as stack:
        warm_env = stack.connect_runner_env()
        classic_env = {**stack.runner_env(), "CSEP_SPARK_MASTER": "local[*]"}
        print(f"warm (Connect) through the dispatcher; {load()}", flush=True)
        figures["warm, event -> commit"] = dispatched(stack, args.events, warm_env,
                                                     max(1, args.warmup))
        print("bare pyspark over Connect", flush=True)
        figures["reference: bare pyspark, Connect"] = bare(
            stack, args.events, stack.spark_connect.url, warm_env)
        if not args.skip_classic:
            print(f"classic (local[*]) through the dispatcher; {load()}", flush=True)
            figures["classic, event -> commit"] = dispatched(stack, args.events, classic_env)
            print("bare pyspark local[*]", flush=True)
            figures["reference: bare pyspark, local[*]"] = bare(
                stack, args.events, "local[*]", classic_env)
    for name, seconds in figures.items():
        print(f"{name:<36} {summary(seconds)}")
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
