"""Head of line: 20 short imports queued behind one 60 s import on one partition.

    python benchmarks/head_of_line.py [--short 20] [--long-seconds 60]

Uses the dispatcher tests' importers (no Spark): ``sleepy`` sleeps for the seconds in its
job id, ``quick`` returns at once. Two runs on one-partition lanes with
``max_in_flight`` 4:

- blocked: the long import first, then the short ones, on the same partition;
- unblocked: the short ones alone.

For each short import: seconds from its publish to its runner's end (the ``.done`` file
the importer writes), and from its publish to its offset being committed (which cannot
pass the long import's offset). Prints p50 and p95; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import Lane, load, summary  # noqa: E402
from stack import samples  # noqa: E402
from stack.local import LocalStack  # noqa: E402


def short_imports(stack: LocalStack, short: int, long_seconds: float | None):
    """(seconds to each short import's end, seconds to its commit)."""
    with Lane(stack) as lane:
        lane.dispatcher(max_in_flight=4)
        if long_seconds is not None:
            lane.publish(samples.completion_event(
                lane.test_job("sleepy", f"sleep-{long_seconds:g}-{lane.name}")))
        jobs = [lane.test_job("quick", f"quick-{n}-{lane.name}") for n in range(short)]
        published, offsets = {}, {}
        for doc in jobs:
            published[doc["id"]] = time.monotonic()
            partition, offsets[doc["id"]] = lane.publish(samples.completion_event(doc))
        done, committed = {}, {}
        deadline = time.monotonic() + 600 + (long_seconds or 0)
        while len(committed) < len(jobs):
            if time.monotonic() > deadline:
                raise TimeoutError(lane.dispatchers[0].log())
            position = lane.committed(partition)
            now = time.monotonic()
            for doc in jobs:
                job = doc["id"]
                if job not in done and (lane.state_dir / f"{job}.done").exists():
                    done[job] = now - published[job]
                if job not in committed and position > offsets[job]:
                    committed[job] = now - published[job]
            time.sleep(0.05)
        return list(done.values()), list(committed.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=int, default=20)
    parser.add_argument("--long-seconds", type=float, default=60)
    args = parser.parse_args()
    with LocalStack() as stack:
        for name, long_seconds in (("unblocked", None), ("blocked", args.long_seconds)):
            done, committed = short_imports(stack, args.short, long_seconds)
            print(f"{name:<9} short imports done:      {summary(done)}")
            print(f"{name:<9} short imports committed: {summary(committed)}; {load()}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
