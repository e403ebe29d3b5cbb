"""Cold classic Spark session vs Spark Connect client: what one runner pays for Spark.

Starts the local stack with a Spark Connect server, then times, each in a fresh Python
process as a runner would be, ``get_spark()`` plus one small query against the metastore:

- classic: ``local[*]``, a new JVM with Delta, S3A and the Hive client;
- connect: an ``sc://`` client of the already warm server.

    python benchmarks/spark_session.py [--rounds 3]

Prints the figures; asserts nothing (performance is reported, not tested).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stack.local import LocalStack, subprocess_env  # noqa: E402

SESSION = """
import json, time
started = time.monotonic()
from runner.spark import SparkSettings, spark_factory
spark = spark_factory(SparkSettings.from_env())()
spark.sql("SHOW DATABASES").collect()
print(json.dumps({"seconds": time.monotonic() - started}))
"""


def timed_session(env: dict[str, str]) -> tuple[float, float]:
    """(seconds inside the process to a first answer, seconds of the whole process)."""
    import time

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", SESSION], env=env, capture_output=True,
                            text=True, timeout=600)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"], wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with LocalStack(spark_connect=True) as stack:
        kinds = {"classic local[*]": subprocess_env(stack.runner_env()),
                 "connect sc://": subprocess_env(stack.connect_runner_env())}
        # The server's own first session (metastore connection) is paid once, not per runner.
        timed_session(kinds["connect sc://"])
        print(f"{'session':<18} {'to first answer (s)':>20} {'whole process (s)':>18}")
        for kind, env in kinds.items():
            runs = [timed_session(env) for _ in range(args.rounds)]
            inside = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            print(f"{kind:<18} {inside:>20.1f} {wall:>18.1f}   (median of {args.rounds})",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
