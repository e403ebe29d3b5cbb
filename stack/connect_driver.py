"""The Spark Connect server's driver program, run by ``spark-submit`` (see
:mod:`stack.spark_connect`).

It starts a classic Spark session, then Spark Connect's gRPC service on it
(``SparkConnectService.start``, which serves sessions made from that one: the port opens
only once it exists), then waits until it is stopped.

Every Connect session shares the server's class loaders (settings of
:func:`stack.spark_connect.server_conf`), on the driver and in the
executors, so code Spark compiles for one session's query serves every later session
(its cache of generated classes is keyed by class loader as well as by code):

- ``spark.sql.artifact.isolation.alwaysApplyClassloader`` stays false. Spark's own
  ``SparkConnectServer`` main class sets it, so that every request runs under a class
  loader of its session's own.
- ``spark.sql.artifact.isolation.enabled`` is false. When true, every session's tasks run
  under an executor class loader of that session's own, and each import compiled its
  MERGE's task code again: 55 classes per sample import, against 2 now.

Sessions then share one class path as well: a jar or class one session added as a Spark
artifact would serve all of them. Runners add none: importers come with the runner.

Only pyspark and the standard library are imported: ``spark-submit`` runs this file by
path, with the interpreter that started the server (``PYSPARK_DRIVER_PYTHON``).
"""

import os
import signal
import sys
import threading

#: How often the driver checks that the JVM that launched it still runs.
PARENT_CHECK_SECONDS = 1.0


def main() -> int:
    from pyspark.sql import SparkSession

    parent = os.getppid()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # Its settings, the shared class loaders included, come from spark-submit's
    # properties file (stack.spark_connect.server_conf).
    spark = SparkSession.builder.getOrCreate()
    jvm = spark.sparkContext._jvm
    jvm.org.apache.spark.sql.connect.service.SparkConnectService.start(
        spark.sparkContext._jsc.sc())
    print(f"Spark Connect serving on port "
          f"{spark.conf.get('spark.connect.grpc.binding.port')}", file=sys.stderr, flush=True)
    # Stopping is the JVM's: SIGTERM runs its shutdown hook, which stops Spark, and the
    # JVM exits when this process does. A JVM that died (killed, out of memory) leaves
    # this process to a new parent: end with it rather than linger.
    while not stop.wait(PARENT_CHECK_SECONDS):
        if os.getppid() != parent:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
