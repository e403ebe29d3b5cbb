"""The runner finds an attempt's Delta commits by their marker, from the table's log on S3
or through Spark's history, with the same answer.

A Connect client makes a table's commits: unmarked ones, two marked ones, then enough
unmarked ones for Delta to write a checkpoint after the marked ones, so the log reader
must step back past the checkpoint to find them. It then searches three ways: with the
runner's S3 client, with an S3 client whose credentials S3 refuses (the search falls
back to Spark), and with none (Spark only).
"""

import json

import pytest

from tests.conftest import run_python

SEARCH = """
import json, os, time
import boto3
from attrs import asdict
from datetime import UTC, datetime
from common.s3 import s3_client
from runner import logs
from runner.commits import USER_METADATA, commits_marked
from runner.delta_log import commits_since, s3_log
from runner.spark import SparkSettings, spark_factory

logs.configure("INFO")
db = "commit_search"
spark = spark_factory(SparkSettings.from_env())()
since = time.time_ns() // 1000
spark.sql(f"CREATE DATABASE {db}")
spark.sql(f"CREATE TABLE {db}.t (k BIGINT) USING delta")
spark.sql(f"CREATE TABLE {db}.not_delta (k BIGINT) USING parquet")
spark.sql(f"CREATE TEMPORARY VIEW v AS SELECT 1 AS k")
for i in range(3):
    spark.sql(f"INSERT INTO {db}.t VALUES ({i})")
spark.conf.set(USER_METADATA, "mark-1")
spark.sql(f"INSERT INTO {db}.t VALUES (100), (101)")
spark.sql(f"DELETE FROM {db}.t WHERE k = 0")
spark.sql(f"INSERT INTO {db}.not_delta VALUES (1)")
spark.conf.unset(USER_METADATA)
for i in range(8):
    spark.sql(f"INSERT INTO {db}.t VALUES ({200 + i})")

location = spark.sql(f"DESCRIBE DETAIL {db}.t").first()["location"]
refused = boto3.client("s3", endpoint_url=os.environ["CSEP_S3_ENDPOINT_URL"],
                       region_name="us-east-1", aws_access_key_id="refused",
                       aws_secret_access_key="refused-secret")
searches = {name: [asdict(c) for c in commits_marked(spark, db, "mark-1",
                                                     since_micros=since, s3=s3)]
            for name, s3 in (("log", s3_client()), ("refused", refused), ("spark", None))}
cutoff = datetime.fromtimestamp(since / 1e6 - 60, UTC)
in_log = [c.version for c in commits_since(s3_client(), location, cutoff, listing_step=3)]
future = commits_since(s3_client(), location, datetime.now(UTC).replace(year=2100))
bucket, log = s3_log(location)
checkpoint = s3_client().get_object(Bucket=bucket, Key=log + "_last_checkpoint")
print(json.dumps({"searches": searches, "in_log": in_log, "future": len(future),
                  "last_checkpoint": json.loads(checkpoint["Body"].read())["version"]}))
"""


@pytest.fixture(scope="module")
def searched(stack, spark_connect, runner_env):
    env = {**runner_env, "CSEP_SPARK_MASTER": spark_connect.url}
    run = run_python(SEARCH, env, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1]), run.stderr


def test_the_log_on_s3_and_sparks_history_find_the_same_marked_commits(searched):
    found, _ = searched
    searches = found["searches"]
    assert searches["log"] == searches["refused"] == searches["spark"]
    assert [(c["table"], c["version"], c["operation"]) for c in searches["log"]] == [
        ("commit_search.t", 4, "WRITE"), ("commit_search.t", 5, "DELETE")]
    assert searches["log"][0]["metrics"]["numOutputRows"] == "2"
    assert searches["log"][1]["metrics"]["numDeletedRows"] == "1"


def test_the_log_reader_steps_back_past_the_last_checkpoint(searched):
    found, _ = searched
    # Versions 0 (CREATE) to 13, all made within the cutoff; the checkpoint at 10 is
    # after the marked commits, and steps of 3 versions reach back to version 0.
    assert found["last_checkpoint"] == 10
    assert found["in_log"] == list(range(14))
    assert found["future"] == 0


def test_a_log_s3_refuses_is_read_through_spark_and_said_so(searched):
    _, stderr = searched
    assert "reading commit_search.t's history through Spark" in stderr
    assert "refused-secret" not in stderr
