"""Spark Connect (``sc://``) and classic (``local[*]``) runners share the same tables.

A Connect client writes a Delta table by name (CREATE + MERGE), a classic Spark process
reads it by name and writes a second one, and a Connect client reads that back: both
kinds of session go through the same metastore (PostgreSQL) to the same S3 files, which
delta-rs reads too. Connect clients are cheap (no local JVM); the one classic process is
the one this test needs. ``delta.tables.DeltaTable`` works for a Connect client through
Delta's Connect plug-in, which the stack builds from Delta's sources.

Runner-like clients on the one server keep their own session (confs, temporary views,
failures) while a new session reuses the code another one compiled, a client killed
mid-query leaves the server serving, and a server killed with SIGKILL is started
again on its port by the stack's supervisor. On every start the server runs its warm-up
MERGEs before it serves, and leaves nothing of them behind.
"""

import json
import os
import random
import signal
import subprocess
import sys

import pytest
from deltalake import DeltaTable

from stack.connect_driver import WARMUP_PREFIX
from tests.conftest import SPARK_CONNECT_WARMUP, run_python
from tests.integration.dispatcher_lane import wait_until

CONNECT_WRITE = """
import json
from runner.spark import SparkSettings, spark_factory
settings = SparkSettings.from_env()
assert settings.is_connect, settings.master
spark = spark_factory(settings)()
spark.sql("CREATE DATABASE IF NOT EXISTS connect_smoke")
spark.sql("CREATE TABLE connect_smoke.from_connect (name STRING, n BIGINT) USING delta")
for rows in ([("a", 1), ("b", 2)], [("b", 3), ("c", 4)]):
    spark.createDataFrame(rows, "name string, n bigint").createOrReplaceTempView("src")
    spark.sql("MERGE INTO connect_smoke.from_connect t USING src s ON t.name = s.name "
              "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
location = spark.sql("DESCRIBE DETAIL connect_smoke.from_connect").first()["location"]
print(json.dumps({"location": location, "remote": type(spark).__module__}))
"""

CLASSIC_READ_WRITE = """
import json
from runner.spark import SparkSettings, spark_factory
settings = SparkSettings.from_env()
assert settings.master == "local[*]", settings.master
spark = spark_factory(settings)()
rows = [tuple(r) for r in spark.sql(
    "SELECT name, n FROM connect_smoke.from_connect ORDER BY name").collect()]
spark.createDataFrame([("x", 10), ("y", 20)], "name string, n bigint").write.format(
    "delta").saveAsTable("connect_smoke.from_classic")
print(json.dumps({"rows": rows}))
spark.stop()
"""

CONNECT_READ = """
import json
from runner.spark import SparkSettings, spark_factory
spark = spark_factory(SparkSettings.from_env())()
rows = [tuple(r) for r in spark.table("connect_smoke.from_classic").orderBy("name").collect()]
print(json.dumps({"rows": rows}))
"""

DELTA_TABLE_API = """
import json
from delta.tables import DeltaTable
from runner.spark import SparkSettings, spark_factory
spark = spark_factory(SparkSettings.from_env())()
spark.sql("CREATE DATABASE IF NOT EXISTS connect_smoke")
spark.createDataFrame([("x", 10), ("y", 20)], "name string, n bigint").write.format(
    "delta").saveAsTable("connect_smoke.delta_api")
table = DeltaTable.forName(spark, "connect_smoke.delta_api")
source = spark.createDataFrame([("y", 21), ("z", 30)], "name string, n bigint")
(table.alias("t").merge(source.alias("s"), "t.name = s.name")
    .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
merged = [tuple(r) for r in table.toDF().orderBy("name").collect()]
table.update("name = 'x'", {"n": "n + 1"})
table.delete("name = 'z'")
print(json.dumps({
    "merged": merged,
    "rows": [tuple(r) for r in table.toDF().orderBy("name").collect()],
    "operations": [r.operation for r in table.history().orderBy("version").collect()]}))
"""


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def connect_env(stack, spark_connect, runner_env):
    return {**runner_env, "CSEP_SPARK_MASTER": spark_connect.url}


def test_tables_by_name_across_connect_and_classic_sessions(stack, connect_env, runner_env):
    write = run_python(CONNECT_WRITE, connect_env)
    assert write.returncode == 0, write.stderr[-4000:]
    written = last_json(write.stdout)
    assert written["remote"] == "pyspark.sql.connect.session"
    assert written["location"] == f"{stack.warehouse_dir}/connect_smoke.db/from_connect"

    classic = run_python(CLASSIC_READ_WRITE, runner_env)
    assert classic.returncode == 0, classic.stderr[-4000:]
    assert last_json(classic.stdout)["rows"] == [["a", 1], ["b", 3], ["c", 4]]

    read = run_python(CONNECT_READ, connect_env)
    assert read.returncode == 0, read.stderr[-4000:]
    assert last_json(read.stdout)["rows"] == [["x", 10], ["y", 20]]

    assert {"from_classic", "from_connect"} <= set(
        stack.postgres.query('SELECT "TBL_NAME" FROM "TBLS"').split())
    table = DeltaTable(written["location"].replace("s3a://", "s3://"),
                       storage_options=stack.delta_storage_options())
    assert sorted((r["name"], r["n"]) for r in table.to_pyarrow_table().to_pylist()) == [
        ("a", 1), ("b", 3), ("c", 4)]


def test_delta_table_api_over_connect(stack, spark_connect, connect_env):
    assert spark_connect.delta_plugins
    client = run_python(DELTA_TABLE_API, connect_env)
    assert client.returncode == 0, client.stderr[-4000:]
    seen = last_json(client.stdout)
    assert seen["merged"] == [["x", 10], ["y", 21], ["z", 30]]
    assert seen["rows"] == [["x", 11], ["y", 21]]
    assert seen["operations"] == ["CREATE TABLE AS SELECT", "MERGE", "UPDATE", "DELETE"]


# Two runner-like clients at once on one server: each sets the same session conf and temp
# view name to its own value, waits until the other has done so too, then reads them back.
# One of them also fails a query on purpose before reading.
ISOLATED_CLIENT = """
import json, os, sys, time
from pathlib import Path
from runner.spark import SparkSettings, spark_factory
me, other, rendezvous = sys.argv[1], sys.argv[2], Path(sys.argv[3])
zone = {"chicago": "America/Chicago", "tokyo": "Asia/Tokyo"}[me]
spark = spark_factory(SparkSettings.from_env())()
spark.conf.set("spark.sql.session.timeZone", zone)
spark.conf.set("csep.test.owner", me)
spark.createDataFrame([(me,)], "owner string").createOrReplaceTempView("shared_name")
(rendezvous / me).touch()
deadline = time.monotonic() + 120
while not (rendezvous / other).exists():
    assert time.monotonic() < deadline, "the other client never got there"
    time.sleep(0.1)
failed = None
if me == "chicago":
    try:
        spark.sql("SELECT * FROM no_such_table_anywhere").collect()
    except Exception as error:
        failed = type(error).__name__
(rendezvous / f"{me}.read").touch()
while not (rendezvous / f"{other}.read").exists():
    assert time.monotonic() < deadline, "the other client never read"
    time.sleep(0.1)
print(json.dumps({
    "timezone": spark.conf.get("spark.sql.session.timeZone"),
    "owner": spark.conf.get("csep.test.owner"),
    "view": [r.owner for r in spark.table("shared_name").collect()],
    "failed": failed,
    "session": spark.session_id}))
"""

# A client that starts a query lasting a minute and reports when it has been sent.
LONG_QUERY = """
import sys, threading, time
from runner.spark import SparkSettings, spark_factory
spark = spark_factory(SparkSettings.from_env())()
spark.createDataFrame([(1,)], "n int").createOrReplaceTempView("killed_clients_view")
threading.Timer(2.0, lambda: print("querying", flush=True)).start()
spark.sql("SELECT java_method('java.lang.Thread', 'sleep', 60000L)").collect()
"""

SESSION_WORKS = """
import json
from runner.spark import SparkSettings, spark_factory
spark = spark_factory(SparkSettings.from_env())()
print(json.dumps({"sum": spark.range(10).groupBy().sum("id").first()[0],
                  "view_leaked": spark.catalog.tableExists("killed_clients_view")}))
"""

WARMUP_VIEW_SEEN = """
import json
from runner.spark import SparkSettings, spark_factory
spark = spark_factory(SparkSettings.from_env())()
print(json.dumps({"warmup_view": spark.catalog.tableExists("warmup_source")}))
"""

QUERIES = """
import json, sys
from runner.spark import SparkSettings, spark_factory
spark = spark_factory(SparkSettings.from_env())()
sums = [spark.range(100).selectExpr(f"sum(id * {k} + {k + 1})").first()[0]
        for k in map(int, sys.argv[1:])]
print(json.dumps({"sums": sums}))
"""


#: The server's report of a warm-up whose MERGEs all committed (counted in the history
#: of its scratch table).
WARMED_UP = f"warm-up: {SPARK_CONNECT_WARMUP} MERGEs committed in "


SERVING = "Spark Connect serving on port"


def server_log(spark_connect) -> str:
    return (spark_connect.data_dir / "spark-connect.log").read_text(errors="replace")


def served_log(spark_connect) -> str:
    """The server's log once it says it serves (the driver writes that line just after
    the port opens, so a client can be served before it is there)."""
    return wait_until(lambda: (lambda log: log if SERVING in log else None)(
        server_log(spark_connect)), 60, "the server's serving line")


def test_the_server_warms_up_before_it_serves_and_leaves_no_trace(stack, spark_connect,
                                                                  connect_env):
    log = served_log(spark_connect)
    assert WARMED_UP in log, log[-4000:]
    assert log.index(WARMED_UP) < log.index(SERVING)
    assert "warm-up failed" not in log
    assert not list(spark_connect.data_dir.glob(f"{WARMUP_PREFIX}*"))
    assert str(spark_connect.data_dir) not in stack.postgres.query(
        'SELECT "LOCATION" FROM "SDS"')
    client = run_python(WARMUP_VIEW_SEEN, connect_env, timeout=120)
    assert client.returncode == 0, client.stderr[-4000:]
    assert last_json(client.stdout) == {"warmup_view": False}


def start_python(code: str, *args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_parallel_clients_keep_their_own_confs_views_and_failures(connect_env, tmp_path):
    names = ("chicago", "tokyo")
    clients = [start_python(ISOLATED_CLIENT, me, other, str(tmp_path), env=connect_env)
               for me, other in (names, names[::-1])]
    seen = {}
    for name, client in zip(names, clients, strict=True):
        out, err = client.communicate(timeout=300)
        assert client.returncode == 0, err[-4000:]
        seen[name] = last_json(out)

    assert seen["chicago"] == {"timezone": "America/Chicago", "owner": "chicago",
                               "view": ["chicago"], "failed": "AnalysisException",
                               "session": seen["chicago"]["session"]}
    assert seen["tokyo"] == {"timezone": "Asia/Tokyo", "owner": "tokyo", "view": ["tokyo"],
                             "failed": None, "session": seen["tokyo"]["session"]}
    assert seen["chicago"]["session"] != seen["tokyo"]["session"]


def test_a_new_session_reuses_the_code_another_session_compiled(spark_connect, connect_env):
    # Sessions share the server's class loaders, on the driver and in its executors, and
    # its cache of compiled classes holds more than one import's worth: a session running
    # a query another session ran compiles nothing, even after many other queries. With a
    # class loader per session, or Spark's default cache of 100 classes, it compiles again.
    log = spark_connect.data_dir / "spark-connect.log"

    def compiled() -> int:
        return log.read_text(errors="replace").count("Code generated in")

    def run(*ks: int) -> int:
        before = compiled()
        client = start_python(QUERIES, *map(str, ks), env=connect_env)
        out, err = client.communicate(timeout=300)
        assert client.returncode == 0, err[-4000:]
        assert last_json(out) == {"sums": [sum(i * k + k + 1 for i in range(100))
                                           for k in ks]}
        return compiled() - before

    # Literals the server never saw make code it never compiled: 2 classes per query.
    first, *others = random.sample(range(10**6, 10**9), 61)
    assert run(first, *others) > 100
    assert run(first) == 0


def test_a_client_killed_mid_query_leaves_the_server_serving(stack, spark_connect,
                                                             connect_env):
    server_pid = spark_connect.pid
    client = start_python(LONG_QUERY, env=connect_env)
    try:
        assert client.stdout.readline().strip() == "querying", client.stderr.read()[-4000:]
    finally:
        client.send_signal(signal.SIGKILL)
        client.communicate()

    after = run_python(SESSION_WORKS, connect_env, timeout=120)
    assert after.returncode == 0, after.stderr[-4000:]
    assert last_json(after.stdout) == {"sum": 45, "view_leaked": False}
    assert spark_connect.pid == server_pid and spark_connect.running()


def test_a_killed_server_is_restarted_on_its_port(stack, spark_connect, connect_env):
    supervisor = stack.spark_connect_supervisor
    restarts, url, pid = supervisor.restarts, spark_connect.url, spark_connect.pid
    warmed = server_log(spark_connect).count(WARMED_UP)
    os.kill(pid, signal.SIGKILL)

    assert supervisor.wait_restarts(restarts + 1, timeout=300), spark_connect.log_tail()
    assert spark_connect.url == url and spark_connect.pid != pid
    assert server_log(spark_connect).count(WARMED_UP) == warmed + 1
    after = run_python(SESSION_WORKS, connect_env, timeout=120)
    assert after.returncode == 0, after.stderr[-4000:]
    assert last_json(after.stdout)["sum"] == 45

