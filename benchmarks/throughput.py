"""Throughput of the warm path: CheckM2 imports completed per minute with ``max_in_flight``
1, 2 and 4, one dispatcher whose runners are Spark Connect clients of the stack's server.

    python benchmarks/throughput.py [--events 12] [--in-flight 1 2 4] [--tables 1 4]
                                    [--warmup 4] [--server-warmup 30]
                                    [--format delta|iceberg]

For each setting a new lane (topic of 4 partitions, group, dispatcher) gets ``--events``
completion events at once; the time is from the first publish to the last commit. The
jobs belong to ``--tables`` users in turn, so they MERGE into that many tables (a user's
namespace has its own): with one table, runners in flight together conflict and all but
one run their MERGE again. The server runs ``--server-warmup`` MERGEs of its own before
it serves (as a deployed one does by default), then ``--warmup`` imports warm the path
and the tables (a server's JIT keeps compiling through its first few dozen). Prints
imports per minute, the CPU time per import (the machine's, which bounds the rate: with
C cores, 60 * C / (CPU s per import) per minute; the Connect server's; the dispatcher's
with its runners'), and the dispatcher's peak RSS; asserts nothing. With ``--format
iceberg`` the server is on Iceberg and each user's tables are in its own warehouse of the
stack's Iceberg REST catalog.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import (  # noqa: E402
    Lane,
    add_server_warmup,
    busy_cpu_seconds,
    load,
    peak_rss_mb,
    tree_cpu_seconds,
)
from stack import samples  # noqa: E402
from stack.local import LocalStack  # noqa: E402


def imports_per_minute(stack: LocalStack, events: int, in_flight: int,
                       tables: int) -> tuple[float, float, dict[str, float]]:
    """Imports per minute, the dispatcher's peak RSS (MB), and CPU seconds per import:
    the whole machine's (``all``: server, runners, dispatcher, Kafka, S3, PostgreSQL),
    the Connect server's and the dispatcher's with its runners."""
    with Lane(stack, partitions=4) as lane:
        dispatcher = lane.dispatcher(env=stack.connect_runner_env(), max_in_flight=in_flight)
        docs = [lane.sample_job(user=user(n % tables)) for n in range(events)]
        server, dispatcher_pid = stack.spark_connect.pid, dispatcher.process.pid
        started = time.monotonic()
        before = busy_cpu_seconds(), tree_cpu_seconds(server), tree_cpu_seconds(dispatcher_pid)
        sent = [lane.publish(samples.completion_event(doc), partition=n % 4)
                for n, doc in enumerate(docs)]
        last = {}
        for partition, offset in sent:
            last[partition] = max(offset, last.get(partition, -1))
        for partition, offset in last.items():
            lane.wait_committed(partition, offset, timeout=3600, interval=0.1)
        seconds = time.monotonic() - started
        after = busy_cpu_seconds(), tree_cpu_seconds(server), tree_cpu_seconds(dispatcher_pid)
        cpu = {name: (a - b) / events for name, a, b in zip(
            ("all", "server", "dispatcher and runners"), after, before, strict=True)}
        return events / seconds * 60, peak_rss_mb(dispatcher_pid), cpu


def user(n: int) -> str:
    return f"benchuser{n}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=12)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--tables", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--warmup", type=int, default=4,
                        help="imports (one at a time, over the tables) before measuring")
    parser.add_argument("--format", default="delta", choices=("delta", "iceberg"),
                        help="the table format of the server and runners (default: delta)")
    add_server_warmup(parser)
    args = parser.parse_args()
    with LocalStack(spark_connect=True, spark_connect_warmup=args.server_warmup,
                    table_format=args.format) as stack:
        most = max(args.tables)
        if args.format == "iceberg":
            for n in range(most):
                stack.create_iceberg_catalog(user(n))
        imports_per_minute(stack, max(args.warmup, most), 1, most)
        for tables in args.tables:
            for in_flight in args.in_flight:
                rate, rss, cpu = imports_per_minute(stack, args.events, in_flight, tables)
                print(f"{args.format}, {tables} table(s), max_in_flight {in_flight}: "
                      f"{rate:.1f} imports/min "
                      f"({args.events} imports); CPU s per import: {cpu['all']:.1f} in all "
                      f"({os.cpu_count()} cores), server {cpu['server']:.1f}, dispatcher and "
                      f"runners {cpu['dispatcher and runners']:.1f}; dispatcher peak RSS "
                      f"{rss:.0f} MB; {load()}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
