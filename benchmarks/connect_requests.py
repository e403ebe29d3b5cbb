"""Where a warm import's seconds go: every Spark Connect request an importer makes, timed.

    python benchmarks/connect_requests.py [--rounds 8] [--warmup 3] [--importer YAML ...]
                                          [--server-warmup 30]

On a local stack with a Spark Connect server, the built-in CheckM2 importer and each
``--importer`` (a CTS importer's YAML) import the sample CheckM2 job in this process, in
rounds (one import of each per round), each import with a fresh session as a runner has,
through the runner's own ``get_spark``. Every request of the session is timed at the
client: an ``analyze`` (its method: ``schema``, ...), an ``execute`` (the plan's root
relation or command: ``sql_command``, ``catalog``, ``extension`` for Delta's API ...) or a
``config``. Prints, per importer, the median of each request (by its position in the
import) over the counted rounds, the median of their sum and of the whole ``run_import``;
asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import add_server_warmup, load, median  # noqa: E402
from registry import Registry  # noqa: E402
from stack import samples  # noqa: E402
from stack.local import LocalStack  # noqa: E402

#: The requests of the import running now: (what, seconds).
REQUESTS: list[tuple[str, float]] = []


def _timed(what, call):
    started = time.monotonic()
    try:
        return call()
    finally:
        REQUESTS.append((what, time.monotonic() - started))


def instrument() -> None:
    """Time every request of every Connect client of this process into :data:`REQUESTS`."""
    from pyspark.sql.connect.client.core import SparkConnectClient

    analyze, execute = SparkConnectClient._analyze, SparkConnectClient._execute
    iterate, config = (SparkConnectClient._execute_and_fetch_as_iterator,
                       SparkConnectClient.config)

    def plan_name(req) -> str:
        if req.plan.WhichOneof("op_type") == "command":
            return "command " + str(req.plan.command.WhichOneof("command_type"))
        return "query " + str(req.plan.root.WhichOneof("rel_type"))

    def timed_iterate(self, req, observations, *args, **kwargs):
        started = time.monotonic()
        try:
            yield from iterate(self, req, observations, *args, **kwargs)
        finally:
            REQUESTS.append(("execute " + plan_name(req), time.monotonic() - started))

    SparkConnectClient._analyze = lambda self, method, **kw: _timed(
        f"analyze {method}", lambda: analyze(self, method, **kw))
    SparkConnectClient._execute = lambda self, req: _timed(
        "execute " + plan_name(req), lambda: execute(self, req))
    SparkConnectClient._execute_and_fetch_as_iterator = timed_iterate
    SparkConnectClient.config = lambda self, operation: _timed(
        f"config {operation.WhichOneof('op_type')}", lambda: config(self, operation))


def job_info(doc: dict) -> dict:
    """The ``job_info`` a runner gives the importer for the CTS job ``doc``."""
    from contract.spec import EventRef, ImporterRef
    from dispatcher.cts import parse_job

    spec = parse_job(doc, doc["id"]).to_spec(
        ImporterRef(name="x", py_module="x"),
        EventRef(topic="t", partition=0, offset=0, trans_id="t", time=time_now()))
    return spec.job.for_importer()


def recording(factory, sessions: list):
    """``factory`` (a ``get_spark``) that keeps the sessions it returns in ``sessions``."""

    def get_spark(**kwargs):
        sessions.append(factory(**kwargs))
        return sessions[-1]

    return get_spark


def time_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3, help="rounds not counted")
    parser.add_argument("--importer", type=Path, action="append", default=[], metavar="YAML")
    add_server_warmup(parser)
    args = parser.parse_args()
    with LocalStack(spark_connect=True, spark_connect_warmup=args.server_warmup) as stack:
        from runner.spark import SparkSettings, spark_factory, stop_session

        importers = [("built-in checkm2", Registry.load(["@builtin"]).entries, "benchbuiltin")]
        for n, path in enumerate(args.importer, 1):
            entries = Registry.load([path.parent], check="import").entries
            importers.append((path.stem, [e for e in entries
                                          if e.source.resolve() == path.resolve()],
                              f"benchimporter{n}"))
        settings = SparkSettings.from_env(stack.connect_runner_env())
        instrument()
        per_importer: dict[str, list[tuple[list[tuple[str, float]], float]]] = defaultdict(list)
        for round_ in range(args.rounds + args.warmup):
            for label, [entry], user in importers:
                doc = samples.checkm2_job(stack, job_id=f"req-{round_}-{user}", user=user)
                info = job_info(doc)
                module = importlib.import_module(entry.py_module)
                sessions: list = []
                get_spark = recording(spark_factory(settings), sessions)
                REQUESTS.clear()
                started = time.monotonic()
                module.run_import(get_spark, info, dict(entry.importer_meta))
                took = time.monotonic() - started
                for session in sessions[:1]:
                    stop_session(session)
                print(f"  {label}: {took:.2f}s, {len(REQUESTS)} requests "
                      f"{sum(s for _, s in REQUESTS):.2f}s"
                      f"{' (warm-up)' if round_ < args.warmup else ''}  {load()}", flush=True)
                if round_ >= args.warmup:
                    per_importer[label].append((list(REQUESTS), took))
    for label, imports in per_importer.items():
        print(f"\n{label}: run_import p50 {median([t for _, t in imports]):.3f}s, requests "
              f"p50 {median([sum(s for _, s in r) for r, _ in imports]):.3f}s")
        shapes = {tuple(what for what, _ in r) for r, _ in imports}
        if len(shapes) != 1:
            print(f"  (the imports made different requests: {len(shapes)} shapes)")
        requests = imports[0][0]
        for index, (what, _) in enumerate(requests):
            times = [r[index][1] for r, _ in imports if len(r) > index]
            print(f"  {index + 1:>2}. {what:<40} p50 {median(times):.3f}s")
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
