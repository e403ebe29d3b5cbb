"""What the local stack's Spark cluster tells its drivers, before any daemon starts."""

from stack.spark_cluster import SparkCluster


def test_drivers_get_the_master_a_loopback_address_and_defaults_sized_to_the_cluster(
        tmp_path):
    cluster = SparkCluster(tmp_path, workers=3, worker_cores=2)
    env = cluster.client_env()

    assert env["CSEP_SPARK_MASTER"] == f"spark://127.0.0.1:{cluster.port}"
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert env["SPARK_CONF_DIR"] == str(tmp_path / "client-conf")
    assert cluster.client_defaults() == {"spark.sql.shuffle.partitions": "6",
                                         "spark.databricks.delta.snapshotPartitions": "6"}


def test_credentials_reach_the_workers_only_when_given(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-caller")
    monkeypatch.setenv("CSEP_METASTORE_PASSWORD", "from-the-caller")
    daemon_env = SparkCluster(tmp_path)._env()

    assert "AWS_SECRET_ACCESS_KEY" not in daemon_env
    assert "CSEP_METASTORE_PASSWORD" not in daemon_env
    assert daemon_env["SPARK_LOCAL_IP"] == "127.0.0.1"
