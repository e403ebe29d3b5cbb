"""One runner process importing the sample CheckM2 job, as the dispatcher launches it.

Starts the local stack with its Spark Connect server, writes a spec of the sample job to
S3 for each round and times ``python -m runner SPEC --result NAME`` from start to exit
(a thin Connect client: no JVM of its own). With ``--classic`` the runners start their
own ``local[*]`` Spark instead. The first ``--warmup`` rounds are printed but not counted:
a server just started runs its first MERGEs several times slower than a server that has
been importing for a while (class loading, then the JIT), and a deployed server is the
latter. With ``--standby`` each runner is started as the dispatcher's subprocess launcher
keeps one (``python -m runner --standby``), given ``--settle`` seconds to load, and timed
from the hand-over of its arguments to its exit.

    python benchmarks/runner_import.py [--rounds 7] [--warmup 5] [--classic] [--importtime]
                                       [--standby [--settle 3]] [--server-warmup 30]
                                       [--format delta|iceberg]

With ``--format iceberg`` the runners import into the sample user's warehouse in the
stack's Iceberg REST catalog, over a Spark Connect server on Iceberg (or their own Spark
with ``--classic``).

The Connect server runs ``--server-warmup`` warm-up MERGEs before it serves, as a deployed
one does by default (``python -m stack.spark_connect``).

``--importtime`` also prints the slowest imports of the last round (``-X importtime``).
Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import add_server_warmup, load, summary  # noqa: E402
from contract.spec import EventRef, ImporterRef  # noqa: E402
from contract.store import SpecStore  # noqa: E402
from dispatcher.cts import parse_job  # noqa: E402
from stack import samples  # noqa: E402
from stack.local import LocalStack, subprocess_env  # noqa: E402


def put_sample_spec(stack: LocalStack, store: SpecStore) -> str:
    doc = samples.checkm2_job(stack, job_id=f"bench-{uuid.uuid4().hex[:12]}")
    importer = ImporterRef(name="checkm2", py_module="importers.checkm2",
                           importer_meta={"database": "checkm2", "table": "quality_report"})
    event = EventRef(topic="cts-jobs", partition=0, offset=0, trans_id="bench",
                     time=datetime.now(UTC))
    return store.put_spec(parse_job(doc, doc["id"]).to_spec(importer, event))


def run_once(spec_uri: str, env: dict[str, str], importtime: bool) -> tuple[float, str]:
    command = [sys.executable, *(["-X", "importtime"] if importtime else []),
               "-m", "runner", spec_uri, "--result", "result-bench.yaml"]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"runner exited {done.returncode}:\n{done.stderr[-4000:]}")
    return seconds, done.stderr


def run_standby(spec_uri: str, env: dict[str, str], settle: float) -> tuple[float, str]:
    runner = subprocess.Popen([sys.executable, "-m", "runner", "--standby"], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    time.sleep(settle)
    started = time.monotonic()
    _, stderr = runner.communicate(
        json.dumps([spec_uri, "--result", "result-bench.yaml"]) + "\n", timeout=600)
    seconds = time.monotonic() - started
    if runner.returncode != 0:
        raise RuntimeError(f"runner exited {runner.returncode}:\n{stderr[-4000:]}")
    return seconds, stderr


def slowest_imports(stderr: str, count: int = 15) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the top-level imports of ``-X importtime``."""
    rows = []
    for line in stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)", line)
        if found and len(found.group(2)) <= 1:
            rows.append((int(found.group(1)), found.group(3)))
    return sorted(rows, reverse=True)[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--classic", action="store_true")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--standby", action="store_true",
                        help="time runners from the hand-over to a runner on standby")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds a runner on standby loads before its hand-over")
    parser.add_argument("--format", default="delta", choices=("delta", "iceberg"),
                        help="the runners' table format (default: delta)")
    add_server_warmup(parser)
    args = parser.parse_args()

    def run(spec_uri: str) -> tuple[float, str]:
        if args.standby:
            return run_standby(spec_uri, env, args.settle)
        return run_once(spec_uri, env, False)

    with LocalStack(spark_connect=not args.classic, spark_connect_warmup=args.server_warmup,
                    table_format=args.format) as stack:
        if args.format == "iceberg":
            stack.create_iceberg_catalog(samples.CHECKM2.doc["user"])
            classic_env = stack.iceberg_runner_env()
        else:
            classic_env = stack.runner_env()
        env = subprocess_env(classic_env if args.classic else stack.connect_runner_env())
        store = SpecStore(f"s3://{stack.lake_bucket}/specs", stack.s3.client())
        for _ in range(max(1, args.warmup)):
            seconds, _ = run(put_sample_spec(stack, store))
            print(f"  warm-up {seconds:.2f}s", flush=True)
        print(f"before: {load()}", flush=True)
        runs = []
        for _ in range(args.rounds):
            seconds, _ = run(put_sample_spec(stack, store))
            runs.append(seconds)
            print(f"  runner {seconds:.2f}s", flush=True)
        kind = ("classic local[*]" if args.classic else "connect sc://") + f", {args.format}"
        kind += ", from the hand-over to a runner on standby" if args.standby else ""
        print(f"runner process, sample CheckM2 import, {kind}: {summary(runs)}; {load()}")
        if args.importtime:
            _, stderr = run_once(put_sample_spec(stack, store), env, True)
            print("slowest top-level imports (cumulative ms):")
            for micros, module in slowest_imports(stderr):
                print(f"  {micros / 1000:8.1f}  {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
