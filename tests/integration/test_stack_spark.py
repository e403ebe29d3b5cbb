"""Spark with Delta on S3 and the PostgreSQL metastore: tables are shared by name.

One Spark process creates a table and MERGEs into it, a second, separate process reads it
by name, and delta-rs (no Spark, no metastore) reads the same files.
"""

import json

from deltalake import DeltaTable

from tests.conftest import run_python

WRITE = """
from runner.spark import SparkSettings, spark_factory
spark = spark_factory(SparkSettings.from_env())()
spark.sql("CREATE DATABASE IF NOT EXISTS smoke")
spark.sql("CREATE TABLE smoke.genomes (name STRING, completeness DOUBLE) USING delta")
for rows in ([("a", 1.0), ("b", 2.0)], [("b", 3.0), ("c", 4.0)]):
    spark.createDataFrame(rows, "name string, completeness double").createOrReplaceTempView("src")
    spark.sql("MERGE INTO smoke.genomes t USING src s ON t.name = s.name "
              "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
spark.stop()
"""

READ = """
import json
from runner.spark import SparkSettings, spark_factory
spark = spark_factory(SparkSettings.from_env())()
query = "SELECT name, completeness FROM smoke.genomes ORDER BY name"
rows = [tuple(r) for r in spark.sql(query).collect()]
location = spark.sql("DESCRIBE DETAIL smoke.genomes").first()["location"]
print(json.dumps({"rows": rows, "location": location}))
spark.stop()
"""

MERGED = [["a", 1.0], ["b", 3.0], ["c", 4.0]]


def test_table_by_name_across_processes_and_readers(stack, runner_env):
    write = run_python(WRITE, runner_env)
    assert write.returncode == 0, write.stderr[-4000:]

    read = run_python(READ, runner_env)
    assert read.returncode == 0, read.stderr[-4000:]
    result = json.loads(read.stdout.strip().splitlines()[-1])
    assert result["rows"] == MERGED
    assert result["location"] == f"{stack.warehouse_dir}/smoke.db/genomes"

    # The metastore really is PostgreSQL (other tests' tables may be there too).
    registered = stack.postgres.query(
        'SELECT d."NAME" || \'.\' || t."TBL_NAME" FROM "TBLS" t JOIN "DBS" d USING ("DB_ID")')
    assert "smoke.genomes" in registered.split()

    # An independent reader sees the same rows in the same files.
    table = DeltaTable(result["location"].replace("s3a://", "s3://"),
                       storage_options=stack.delta_storage_options())
    independent = sorted([r["name"], r["completeness"]]
                         for r in table.to_pyarrow_table().to_pylist())
    assert independent == MERGED
