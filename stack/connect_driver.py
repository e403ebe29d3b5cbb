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

Before the port opens, the driver can warm itself up (:func:`warm_up`, property
:data:`WARMUP_MERGES`): a server just started runs its first MERGEs several times slower
than one that has been importing for a while, as the JVM loads classes and compiles
Spark's and Delta's code; the warm-up pays that before the first import does. A server
on the ``iceberg`` table format (property :data:`WARMUP_FORMAT`) warms up on an Iceberg
table instead, in a Hadoop catalog in the scratch directory, defined on the warm-up's own
session only: no REST catalog, no user's warehouse, and no client session sees it.

Only pyspark and the standard library are imported: ``spark-submit`` runs this file by
path, with the interpreter that started the server (``PYSPARK_DRIVER_PYTHON``).
"""

import os
import shutil
import signal
import sys
import tempfile
import threading
import time

#: How often the driver checks that the JVM that launched it still runs.
PARENT_CHECK_SECONDS = 1.0
#: The Spark property that sets how many MERGEs :func:`warm_up` runs (0 or unset: none).
WARMUP_MERGES = "spark.csep.connect.warmupMerges"
#: The Spark property naming the table format the warm-up writes: ``delta`` (default) or
#: ``iceberg``.
WARMUP_FORMAT = "spark.csep.connect.warmupFormat"
#: The warm-up session's own Iceberg catalog (a Hadoop catalog in the scratch directory).
WARMUP_CATALOG = "csep_warmup"
WARMUP_PREFIX = "warmup-"
WARMUP_COLUMNS = "name, completeness, contamination, size"
WARMUP_SCHEMA = "name STRING, completeness DOUBLE, contamination DOUBLE, size BIGINT"


def warm_up(spark, rounds: int, parent: str, table_format: str = "delta") -> int:
    """Run ``rounds`` small imports, as an importer makes them, into a ``table_format``
    table in a scratch directory under ``parent`` on the local file system, then remove
    it; return how many MERGEs the table's history shows committed.

    Each round reads a 3-row TSV file (as text, as ``importers.delimited`` does), checks
    its keys, and MERGEs it in with a guarded upsert like ``importers.tables.merge``'s
    (on Delta every tenth one followed by Delta's checkpoint). The table is in a session
    of its own, path-based (Delta) or in that session's own Hadoop catalog (Iceberg):
    nothing reaches the metastore, a REST catalog, the lake, or the sessions clients get.
    """
    session = spark.newSession()
    scratch = tempfile.mkdtemp(prefix=WARMUP_PREFIX, dir=os.path.abspath(parent))
    source = os.path.join(scratch, "source.tsv")
    if table_format == "iceberg":
        prefix = f"spark.sql.catalog.{WARMUP_CATALOG}"
        session.conf.set(prefix, "org.apache.iceberg.spark.SparkCatalog")
        session.conf.set(f"{prefix}.type", "hadoop")
        session.conf.set(f"{prefix}.warehouse", f"file://{scratch}/warehouse")
        table = f"{WARMUP_CATALOG}.warmup.merges"
        session.sql(f"CREATE NAMESPACE IF NOT EXISTS {WARMUP_CATALOG}.warmup")
    else:
        table = "delta.`file://{}/table`".format(scratch.replace("`", "``"))
    try:
        session.sql(f"CREATE TABLE {table} ({WARMUP_SCHEMA}, completed TIMESTAMP) "
                    f"USING {table_format}")
        for round_ in range(rounds):
            with open(source, "w", encoding="utf-8") as out:
                out.write("name\tcompleteness\n")
                out.writelines(f"genome_{row}\t{round_ + row / 10}\n" for row in range(3))
            text = session.read.text(f"file://{source}", wholetext=True).first()[0]
            # The rows as a local relation, which is what a Connect client's
            # createDataFrame sends (a classic one's would start Python workers).
            rows = ", ".join(f"('{name}', {float(value)!r}D, 0.5D, {1000 * round_}L)"
                             for name, value in (line.split("\t")
                                                 for line in text.splitlines()[1:]))
            session.sql(f"SELECT *, timestamp_micros({round_}) AS completed FROM VALUES "
                        f"{rows} AS source({WARMUP_COLUMNS})"
                        ).createOrReplaceTempView("warmup_source")
            session.sql("SELECT count_if(name IS NULL), count(*) - count(DISTINCT name) "
                        "FROM warmup_source").collect()
            session.sql(
                f"MERGE INTO {table} t USING warmup_source s ON t.name = s.name "
                "WHEN MATCHED AND (t.completed IS NULL OR s.completed >= t.completed) AND "
                "(NOT (t.completeness <=> s.completeness) OR NOT (t.size <=> s.size)) "
                "THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
        if table_format == "iceberg":
            # An empty table has no snapshot: each one is a MERGE's.
            return session.table(f"{table}.snapshots").count()
        return session.sql(f"DESCRIBE HISTORY {table}").where("operation = 'MERGE'").count()
    finally:
        session.catalog.dropTempView("warmup_source")
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    from pyspark.sql import SparkSession

    parent = os.getppid()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # Its settings, the shared class loaders included, come from spark-submit's
    # properties file (stack.spark_connect.server_conf).
    spark = SparkSession.builder.getOrCreate()
    rounds = int(spark.conf.get(WARMUP_MERGES, "0"))
    table_format = spark.conf.get(WARMUP_FORMAT, "delta")
    if rounds > 0:
        # A failed warm-up costs speed, not service: the server opens its port anyway.
        try:
            # The working directory is the server's data directory (stack.spark_connect).
            started = time.monotonic()
            merged = warm_up(spark, rounds, os.getcwd(), table_format)
            seconds = time.monotonic() - started
            print(f"warm-up: {merged} MERGEs committed in {seconds:.1f} s "
                  f"({table_format})", file=sys.stderr, flush=True)
        except Exception as error:  # noqa: BLE001 - any failure: serve unwarmed
            print(f"warm-up failed, serving without it: {type(error).__name__}: {error}",
                  file=sys.stderr, flush=True)
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
