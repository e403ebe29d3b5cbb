"""Command line of the local stack.

    python -m stack up [--keep-running] [--spark-connect]
        start every server (with --spark-connect also a Spark Connect server), print the
        endpoints and write .stack/env (the runner's environment; with --spark-connect
        its CSEP_SPARK_MASTER is the server's sc:// URL)
    python -m stack demo [--keep-running] [--classic-spark]
        the stack with its Spark Connect server, plus the dispatcher, whose runners are
        clients of that warm server (with --classic-spark: each runner starts its own
        local[*] Spark instead); import the sample CheckM2 job end to end and show the
        result
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from stack.local import LocalStack
from stack.paths import ROOT

ENV_FILE = ROOT / ".stack" / "env"


def write_env_file(stack: LocalStack) -> None:
    """Write the runner environment (credentials included) to an owner-only file."""
    ENV_FILE.parent.mkdir(exist_ok=True)
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.chmod(0o600)
    env = stack.connect_runner_env() if stack.spark_connect else stack.runner_env()
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))


def wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def up(args: argparse.Namespace) -> int:
    with LocalStack(spark_connect=args.spark_connect) as stack:
        write_env_file(stack)
        for name, value in stack.endpoints().items():
            print(f"{name:>22}: {value}")
        print(f"{'runner environment':>22}: {ENV_FILE} (contains credentials)")
        if args.keep_running:
            print("stack running; Ctrl-C stops it", flush=True)
            wait_for_signal()
    print("stack stopped")
    return 0


def demo(args: argparse.Namespace) -> int:
    from stack.demo import run_demo

    with LocalStack(spark_connect=not args.classic_spark) as stack:
        write_env_file(stack)
        status = run_demo(stack, keep_running=args.keep_running, wait=wait_for_signal)
    print("stack stopped")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the local stack")
    up_parser.add_argument("--keep-running", action="store_true",
                           help="keep the servers up until Ctrl-C")
    up_parser.add_argument("--spark-connect", action="store_true",
                           help="also start a Spark Connect server for sc:// runners")
    up_parser.set_defaults(func=up)
    demo_parser = commands.add_parser(
        "demo", help="start the stack and the dispatcher, import the sample CheckM2 job")
    demo_parser.add_argument("--keep-running", action="store_true",
                             help="keep the stack and the dispatcher up until Ctrl-C")
    demo_parser.add_argument("--classic-spark", action="store_true",
                             help="no Spark Connect server: each runner starts local[*] Spark")
    demo_parser.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
