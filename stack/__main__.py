"""Command line of the local stack.

    python -m stack up [--keep-running] [--spark-connect [--warmup-merges N]]
                       [--spark-cluster]
        start every server (with --spark-connect also a Spark Connect server, which
        runs N warm-up MERGEs before it serves: stack.connect_driver; with
        --spark-cluster a Spark standalone master and two workers, stack.spark_cluster,
        which the Connect server then uses as its master), print the endpoints and
        write .stack/env (the runner's environment; with --spark-connect its
        CSEP_SPARK_MASTER is the server's sc:// URL, else with --spark-cluster the
        master's spark:// URL) and .stack/stack.json (the
        servers' coordinates, for `replay`; removed when the stack stops)
    python -m stack demo [--keep-running] [--classic-spark] [--iceberg]
        the stack with its Spark Connect server, plus the dispatcher, whose runners are
        clients of that warm server (with --classic-spark: each runner starts its own
        local[*] Spark instead; with --iceberg the server, or the runners' own Spark, is
        on the iceberg table format, and they import into an Iceberg table in the sample
        user's warehouse of the stack's REST catalog); replay the sample event set
        (stack/samples: a CheckM2 job) end to end and show the result
    python -m stack replay DIR [--topic T] [--dlq-topic T] [--group G] [--timeout S]
                           [--state FILE]
        replay the event set DIR into the running stack (.stack/stack.json): upload its
        output files, register its jobs with the CTS double, publish their events, and
        print each event's outcome once the dispatcher's group has committed it; exit 0
        when every event was committed, 1 otherwise (stack.replay)
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from stack.local import LocalStack
from stack.paths import ROOT
from stack.replay import DEFAULT_DLQ_TOPIC, DEFAULT_GROUP, DEFAULT_TOPIC
from stack.spark_connect import warmup_count
from stack.state import STATE_FILE, StackState

ENV_FILE = ROOT / ".stack" / "env"


def write_env_file(stack: LocalStack, iceberg: bool = False) -> None:
    """Write the runner environment (credentials included) to an owner-only file; with
    ``iceberg``, a runner's on the ``iceberg`` table format."""
    ENV_FILE.parent.mkdir(exist_ok=True)
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.chmod(0o600)
    if stack.spark_connect:
        env = stack.connect_runner_env()
    elif stack.spark_cluster:
        env = stack.cluster_runner_env()
    else:
        env = stack.runner_env()
    if iceberg:
        env = {**env, **stack.iceberg_runner_env()}
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))


@contextlib.contextmanager
def running(stack: LocalStack, iceberg: bool = False) -> Iterator[None]:
    """Publish the stack's environment and coordinates while it runs."""
    write_env_file(stack, iceberg)
    StackState.of(stack).write()
    try:
        yield
    finally:
        STATE_FILE.unlink(missing_ok=True)


def wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def up(args: argparse.Namespace) -> int:
    with LocalStack(spark_connect=args.spark_connect,
                    spark_connect_warmup=args.warmup_merges,
                    spark_cluster=args.spark_cluster) as stack, running(stack):
        for name, value in stack.endpoints().items():
            print(f"{name:>22}: {value}")
        print(f"{'runner environment':>22}: {ENV_FILE} (contains credentials)")
        print(f"{'stack coordinates':>22}: {STATE_FILE} (contains credentials)")
        if args.keep_running:
            print("stack running; Ctrl-C stops it", flush=True)
            wait_for_signal()
    print("stack stopped")
    return 0


def demo(args: argparse.Namespace) -> int:
    from stack.demo import run_demo

    with LocalStack(spark_connect=not args.classic_spark,
                    table_format="iceberg" if args.iceberg else "delta") as stack, (
            running(stack, args.iceberg)):
        status = run_demo(stack, keep_running=args.keep_running, wait=wait_for_signal,
                          iceberg=args.iceberg)
    print("stack stopped")
    return status


def replay_set(args: argparse.Namespace) -> int:
    from stack.replay import EventSetError, replay

    try:
        state = StackState.read(args.state)
        reports = replay(state, args.directory, topic=args.topic, dlq_topic=args.dlq_topic,
                         group=args.group, timeout=args.timeout,
                         out=lambda line: print(line, flush=True))
    except (OSError, EventSetError, ValueError) as error:
        print(f"replay: {error}", file=sys.stderr)
        return 1
    return 0 if all(r.outcome != "not committed" for r in reports) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the local stack")
    up_parser.add_argument("--keep-running", action="store_true",
                           help="keep the servers up until Ctrl-C")
    up_parser.add_argument("--spark-connect", action="store_true",
                           help="also start a Spark Connect server for sc:// runners")
    up_parser.add_argument("--warmup-merges", type=warmup_count, default=0, metavar="N",
                           help="the Spark Connect server runs N small MERGEs into a "
                                "scratch table before it serves (default 0)")
    up_parser.add_argument("--spark-cluster", action="store_true",
                           help="also start a Spark standalone master and two workers "
                                "for spark:// runners (and the Connect server's master)")
    up_parser.set_defaults(func=up)
    demo_parser = commands.add_parser(
        "demo", help="start the stack and the dispatcher, import the sample CheckM2 job")
    demo_parser.add_argument("--keep-running", action="store_true",
                             help="keep the stack and the dispatcher up until Ctrl-C")
    demo_parser.add_argument("--classic-spark", action="store_true",
                             help="no Spark Connect server: each runner starts local[*] Spark")
    demo_parser.add_argument("--iceberg", action="store_true",
                             help="the iceberg table format: Iceberg tables in the stack's "
                                  "REST catalog (classic Spark runners)")
    demo_parser.set_defaults(func=demo)
    replay_parser = commands.add_parser(
        "replay", help="replay an event set into the running stack and print the outcomes")
    replay_parser.add_argument("directory", type=Path, help="the event set")
    replay_parser.add_argument("--topic", default=DEFAULT_TOPIC)
    replay_parser.add_argument("--dlq-topic", default=DEFAULT_DLQ_TOPIC)
    replay_parser.add_argument("--group", default=DEFAULT_GROUP,
                               help="the dispatcher's consumer group")
    replay_parser.add_argument("--timeout", type=float, default=600.0,
                               help="seconds to wait for the dispatcher to commit every event")
    replay_parser.add_argument("--state", type=Path, default=STATE_FILE,
                               help=f"the stack's coordinates (default {STATE_FILE})")
    replay_parser.set_defaults(func=replay_set)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
