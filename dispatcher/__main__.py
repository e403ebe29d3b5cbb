"""``python -m dispatcher [--config FILE]``: consume CTS events until SIGTERM or SIGINT.

Exit status: 0 after a graceful shutdown, 69 when a service (the CTS, S3, Kafka, a
runner's) stayed down past ``infrastructure_budget_seconds``, 70 after a dead-letter
streak (``dead_letter_streak``), 78 for an unusable configuration or importer registry
(one line on stderr).

Start-up reads the process's environment and never changes it: what the runners must
see (the registry's directories) is handed to the launcher explicitly
(:func:`runner_environment`).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Mapping

from common import logs
from dispatcher import config as configuration
from dispatcher.config import Config
from registry import RegistryError
from registry.registry import DIRS_VARIABLE

EXIT_CONFIG = 78  # sysexits EX_CONFIG

log = logging.getLogger("dispatcher")


def runner_environment(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the dispatcher's registry is read with and runners start from:
    ``environ`` (the dispatcher's own), ``config.registry_dirs`` appended to its
    ``CSEP_IMPORTER_DIRS`` so that both sides see the same importers. ``environ`` is not
    changed."""
    runner_env = dict(environ)
    if config.registry_dirs:
        runner_env[DIRS_VARIABLE] = os.pathsep.join(
            filter(None, [environ.get(DIRS_VARIABLE), *config.registry_dirs]))
    return runner_env


def build(config: Config, environ: Mapping[str, str] = os.environ):
    """Wire the dispatcher's parts from ``config`` and the process's ``environ`` (read,
    never written); the services are contacted lazily."""
    from kafka import KafkaConsumer, KafkaProducer

    from common.s3 import s3_client
    from contract.store import SpecStore
    from dispatcher.cts import CtsClient
    from dispatcher.loop import Dispatcher
    from dispatcher.metrics import Health, Metrics, serve
    from registry import Registry

    runner_env = runner_environment(config, environ)
    registry = Registry.load(check="find", environ=runner_env)
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    assignor = {"cooperative-sticky": CooperativeStickyAssignor,
                "range": RangePartitionAssignor,
                "roundrobin": RoundRobinPartitionAssignor}[config.kafka.assignor]
    call_ms = int(config.kafka.call_timeout_seconds * 1000)
    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap_servers, group_id=config.kafka.group_id,
        enable_auto_commit=False, auto_offset_reset="earliest",
        max_poll_records=config.max_buffered_events, client_id="cdm-spark-events-dispatcher",
        max_poll_interval_ms=config.kafka.max_poll_interval_ms,
        session_timeout_ms=config.kafka.session_timeout_ms,
        heartbeat_interval_ms=min(3000, config.kafka.session_timeout_ms // 3),
        group_instance_id=config.kafka.group_instance_id,
        partition_assignment_strategy=(assignor,))
    # max_block_ms bounds send() when the broker is unknown; the DLQ waits call_ms more.
    producer = KafkaProducer(
        bootstrap_servers=config.kafka.bootstrap_servers, acks="all", retries=5,
        max_block_ms=call_ms, request_timeout_ms=call_ms, delivery_timeout_ms=2 * call_ms + 1000,
        max_request_size=max(1 << 20, 2 * config.kafka.max_message_bytes))
    metrics, health = Metrics(e.name for e in registry.entries), Health()
    serve(metrics, health, config.metrics_port)
    return Dispatcher(
        config, consumer=consumer, producer=producer,
        cts=CtsClient(config.cts.url, config.cts_token, config.cts.timeout_seconds),
        store=SpecStore(config.spec_store, s3_client(
            environ, timeout_seconds=config.s3_timeout_seconds,
            max_attempts=config.s3_max_attempts)),
        registry=registry,
        launcher=config.launcher.make(runner_env), metrics=metrics, health=health)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dispatcher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (CSEP_* variables override it)")
    args = parser.parse_args(argv)
    try:
        config = configuration.load(args.config)
    except configuration.ConfigError as error:
        print(f"dispatcher: {error}", file=sys.stderr)
        return EXIT_CONFIG
    # kafka-python logs every connection hiccup at INFO/WARNING; ours say what matters.
    logs.configure(config.log_level, secrets=[config.cts_token], quiet=("kafka",))
    try:
        dispatcher = build(config)
    except RegistryError as error:
        print(f"dispatcher: the importer registry is unusable: {error}", file=sys.stderr)
        return EXIT_CONFIG
    def shut_down(number: int, _frame: object) -> None:
        log.info("signal %s: shutting down", number)
        dispatcher.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shut_down)
    # What start-up built (botocore's models, the registry, the clients) lives as long as
    # the process: out of the collector's generations, its full passes no longer walk it.
    gc.freeze()
    return dispatcher.run()


if __name__ == "__main__":
    sys.exit(main())
