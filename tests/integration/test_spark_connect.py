"""Spark Connect (``sc://``) and classic (``local[*]``) runners share the same tables.

A Connect client writes a Delta table by name (CREATE + MERGE), a classic Spark process
reads it by name and writes a second one, and a Connect client reads that back: both
kinds of session go through the same metastore (PostgreSQL) to the same S3 files, which
delta-rs reads too. Connect clients are cheap (no local JVM); the one classic process is
the one this test needs.
"""

import json

import pytest
from deltalake import DeltaTable

from tests.conftest import run_python

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
print(json.dumps({"rows": [tuple(r) for r in table.toDF().orderBy("name").collect()]}))
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

    assert sorted(stack.postgres.query('SELECT "TBL_NAME" FROM "TBLS"').split()) >= [
        "from_classic", "from_connect"]
    table = DeltaTable(written["location"].replace("s3a://", "s3://"), storage_options={
        "AWS_ENDPOINT_URL": stack.s3.endpoint, "AWS_REGION": stack.s3.region,
        "AWS_ACCESS_KEY_ID": stack.s3.access_key, "AWS_SECRET_ACCESS_KEY": stack.s3.secret_key,
        "AWS_ALLOW_HTTP": "true"})
    assert sorted((r["name"], r["n"]) for r in table.to_pyarrow_table().to_pylist()) == [
        ("a", 1), ("b", 3), ("c", 4)]


def test_delta_table_api_over_connect(stack, spark_connect, connect_env):
    if not spark_connect.delta_plugins:
        pytest.skip("the Delta Connect plug-in jars (jvm/pom.xml profile spark-connect) "
                    "could not be resolved from Maven on this machine")
    merged = run_python(DELTA_TABLE_API, connect_env)
    assert merged.returncode == 0, merged.stderr[-4000:]
    assert last_json(merged.stdout)["rows"] == [["x", 10], ["y", 21], ["z", 30]]
