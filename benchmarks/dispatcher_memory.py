"""The dispatcher's memory with 8 runners in flight.

    python benchmarks/dispatcher_memory.py [--runners 8] [--sleep 20]

One dispatcher (subprocess launcher, ``max_in_flight`` = ``--runners``) gets that many
events of the dispatcher tests' ``sleepy`` importer (no Spark) on 4 partitions; once all
are committed its peak RSS (``VmHWM`` of ``/proc/<pid>/status``) is read, and its RSS
while idle before them. Prints the figures (the goal is 100 MB at most); asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import Lane, load, peak_rss_mb  # noqa: E402
from stack import samples  # noqa: E402
from stack.local import LocalStack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runners", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=20)
    args = parser.parse_args()
    with LocalStack() as stack, Lane(stack, partitions=4) as lane:
        dispatcher = lane.dispatcher(max_in_flight=args.runners)
        time.sleep(2)
        idle = peak_rss_mb(dispatcher.process.pid)
        sent = [lane.publish(samples.completion_event(
                    lane.test_job("sleepy", f"sleep-{args.sleep:g}-{n}-{lane.name}")),
                    partition=n % 4)
                for n in range(args.runners)]
        in_flight = 0
        while in_flight < args.runners:  # every runner started: its attempts file exists
            in_flight = len(list(lane.state_dir.glob("*.attempts")))
            time.sleep(0.2)
        print(f"{in_flight} runners in flight; {load()}", flush=True)
        for partition, offset in sent:
            lane.wait_committed(partition, offset, timeout=600, interval=0.2)
        peak = peak_rss_mb(dispatcher.process.pid)
        print(f"dispatcher peak RSS: idle {idle:.0f} MB, with {args.runners} runners in flight "
              f"{peak:.0f} MB (goal <= 100 MB); {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
