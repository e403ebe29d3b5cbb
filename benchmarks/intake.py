"""Intake: events the dispatcher only acknowledges (states other than ``complete``), read
by one dispatcher and by a bare kafka-python consumer of the same topic, in one run.

    python benchmarks/intake.py [--events 20000] [--rounds 5] [--profile intake.prof]

Each round publishes the events on a one-partition topic of its own first, then times the
two readers alike, one after the other. Each is a process of its own, timed from the
moment it is ready to read (its consumer built and subscribed: the dispatcher's log says
"dispatcher started", its own start-up before is printed apart; the bare consumer prints
"subscribed") until its group's commit of the last offset is seen, looked at every 20 ms
by the same watcher. The bare consumer has the dispatcher's fetch settings and records per
poll (its ``max_buffered_events``) and ends with its commit; the dispatcher runs without
a standby runner. It prints the CPU seconds each process spent meanwhile and the
dispatcher's peak RSS (``VmHWM``). A round takes a second or two per reader, so a burst of
other work on the machine moves one round's ratio a lot: the median of the rounds' ratios
is printed last (the CPU seconds' ratio moves much less with the load). Prints the
figures; asserts nothing. With ``--profile`` a round of its own, before the others and not
in the median, runs the dispatcher under cProfile, and the busiest functions of its
profile are printed after the figures.
"""

from __future__ import annotations

import argparse
import json
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attrs  # noqa: E402
from kafka import KafkaConsumer, TopicPartition  # noqa: E402

from benchmarks.measure import Lane, load, peak_rss_mb, tree_cpu_seconds  # noqa: E402
from dispatcher.config import Config  # noqa: E402
from dispatcher.launchers import RUNNER_ENV  # noqa: E402
from stack.local import LocalStack  # noqa: E402

STATES = ["created", "job_submitted", "upload_submitted", "error", "canceled"]
#: Records per poll of both readers: the dispatcher's (its buffer's size, by default).
POLL_RECORDS = attrs.fields(Config).max_buffered_events.default


def main() -> int:
    if sys.argv[1:2] == ["--bare"]:  # the bare consumer's process, started by measure()
        return bare_consumer(*sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--profile", type=Path,
                        help="write the dispatcher's cProfile here and print its top functions")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds whose median ratio is printed last (default 5)")
    args = parser.parse_args()
    ratios = []
    with LocalStack() as stack:
        if args.profile:  # a round of its own: cProfile slows the dispatcher down
            measure(stack, args.events, "profiled", args.profile.resolve())
        for round_ in range(1, args.rounds + 1):
            ratios.append(measure(stack, args.events, str(round_), None))
    print(f"median ratio over {len(ratios)} rounds: {statistics.median(ratios):.2f} "
          f"({', '.join(f'{r:.2f}' for r in ratios)})")
    if args.profile:  # written when the dispatcher exited, at the lane's close
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)
    return 0


def measure(stack: LocalStack, events: int, round_: str, profile: Path | None) -> float:
    """One round on a topic of its own; prints its figures, returns its ratio."""
    with Lane(stack) as lane:
        for n in range(events):
            lane.producer.send(lane.topic, value=json.dumps({
                "job_id": f"intake-{n}", "state": STATES[n % len(STATES)],
                "time": "2026-11-20T10:15:00.123+00:00", "trans_id": f"t{n}"}).encode(),
                partition=0)
        lane.producer.flush(60)
        print(f"round {round_}: {events} events published; {load()}", flush=True)

        last = TopicPartition(lane.topic, 0), events - 1
        bare = subprocess.Popen(
            [sys.executable, __file__, "--bare", stack.kafka.bootstrap, lane.topic,
             f"{lane.name}-bare", str(events)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert bare.stdout is not None and bare.stdin is not None
            if bare.stdout.readline().strip() != "subscribed":
                raise RuntimeError("the bare consumer did not start")
            started, cpu = time.monotonic(), tree_cpu_seconds(bare.pid)
            lane.wait_committed(*last, timeout=1800, interval=0.02, group=f"{lane.name}-bare")
            raw_seconds, raw_cpu = time.monotonic() - started, tree_cpu_seconds(bare.pid) - cpu
            bare.stdin.close()  # it waited, so that its CPU seconds could be read
            bare.wait(30)
        finally:
            bare.kill()

        launched = time.monotonic()
        # No standby runner: its start (pyspark's client loaded, about a CPU second, once)
        # would share the cores with the intake measured here, which starts no runner.
        dispatcher = lane.dispatcher(profile=profile, launcher={"subprocess": {
            "pass_env": list(RUNNER_ENV), "standby": False}})
        # /health serves before the dispatcher has built its S3 client and launcher
        # (about 0.15 CPU s): its intake starts with its loop, as its log says.
        while "dispatcher started" not in dispatcher.log(tail=1 << 20):
            time.sleep(0.005)
        started, cpu = time.monotonic(), tree_cpu_seconds(dispatcher.process.pid)
        lane.wait_committed(*last, timeout=1800, interval=0.02)
        dispatcher_seconds = time.monotonic() - started
        dispatcher_cpu = tree_cpu_seconds(dispatcher.process.pid) - cpu
        rss = peak_rss_mb(dispatcher.process.pid)

        raw_rate = events / raw_seconds
        dispatcher_rate = events / dispatcher_seconds
        print(f"kafka-python consumer: {raw_rate:,.0f} events/s ({raw_seconds:.1f}s; "
              f"{raw_cpu:.2f} CPU s)")
        print(f"dispatcher:            {dispatcher_rate:,.0f} events/s ({dispatcher_seconds:.1f}s"
              f" from its loop's start; {dispatcher_cpu:.2f} CPU s; {started - launched:.1f}s"
              " to start)")
        print(f"ratio dispatcher/raw:  {dispatcher_rate / raw_rate:.2f} "
              f"(CPU seconds raw/dispatcher: {raw_cpu / dispatcher_cpu:.2f})")
        print(f"dispatcher peak RSS:   {rss:.0f} MB; {load()}", flush=True)
        return dispatcher_rate / raw_rate


def bare_consumer(bootstrap: str, topic: str, group: str, events: str) -> int:
    """Read ``events`` records of ``topic`` and commit, as the dispatcher's consumer would:
    its fetch settings (kafka-python's defaults) and records per poll; then wait for
    stdin to close."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             max_poll_records=POLL_RECORDS)
    consumer.subscribe([topic])
    print("subscribed", flush=True)
    read = 0
    while read < int(events):
        for records in consumer.poll(timeout_ms=1000).values():
            read += len(records)
    consumer.commit()
    sys.stdin.read()
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
