"""Intake: events the dispatcher only acknowledges (states other than ``complete``), read
by one dispatcher and by a bare kafka-python consumer of the same topic, in one run.

    python benchmarks/intake.py [--events 20000] [--profile intake.prof]

Publishes the events on a one-partition topic first, then times each reader from its
start to the last offset (the dispatcher: until its group has committed the last offset;
the consumer: until it has read it; the dispatcher's own start-up, until it serves
``/health``, is printed apart), and reads the dispatcher's peak RSS (``VmHWM``).
Prints the figures; asserts nothing. With ``--profile`` the dispatcher runs under cProfile
and the busiest functions of its profile are printed after the figures.
"""

from __future__ import annotations

import argparse
import json
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaConsumer, TopicPartition  # noqa: E402

from benchmarks.measure import Lane, load, peak_rss_mb  # noqa: E402
from stack.local import LocalStack  # noqa: E402

STATES = ["created", "job_submitted", "upload_submitted", "error", "canceled"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--profile", type=Path,
                        help="write the dispatcher's cProfile here and print its top functions")
    args = parser.parse_args()
    with LocalStack() as stack, Lane(stack) as lane:
        for n in range(args.events):
            lane.producer.send(lane.topic, value=json.dumps({
                "job_id": f"intake-{n}", "state": STATES[n % len(STATES)],
                "time": "2026-11-20T10:15:00.123+00:00", "trans_id": f"t{n}"}).encode(),
                partition=0)
        lane.producer.flush(60)
        last = args.events - 1
        print(f"{args.events} events published; {load()}", flush=True)

        started = time.monotonic()
        consumer = KafkaConsumer(lane.topic, bootstrap_servers=stack.kafka.bootstrap,
                                 group_id=f"{lane.name}-raw", enable_auto_commit=False,
                                 auto_offset_reset="earliest", max_poll_records=500)
        read = 0
        while read < args.events:
            for records in consumer.poll(timeout_ms=1000).values():
                read += len(records)
        raw_seconds = time.monotonic() - started
        consumer.close()

        launched = time.monotonic()
        dispatcher = lane.dispatcher(profile=args.profile and args.profile.resolve())
        started = time.monotonic()
        lane.wait_committed(TopicPartition(lane.topic, 0), last, timeout=1800, interval=0.2)
        dispatcher_seconds = time.monotonic() - started
        rss = peak_rss_mb(dispatcher.process.pid)

        raw_rate = args.events / raw_seconds
        dispatcher_rate = args.events / dispatcher_seconds
        print(f"kafka-python consumer: {raw_rate:,.0f} events/s ({raw_seconds:.1f}s)")
        print(f"dispatcher:            {dispatcher_rate:,.0f} events/s ({dispatcher_seconds:.1f}s"
              f" once serving; {started - launched:.1f}s to start)")
        print(f"ratio dispatcher/raw:  {dispatcher_rate / raw_rate:.2f}")
        print(f"dispatcher peak RSS:   {rss:.0f} MB; {load()}")
    if args.profile:  # written when the dispatcher exited, at the lane's close
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
