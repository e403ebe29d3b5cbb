"""The Spark Connect server's configuration is the classic runner's, plus the gRPC binding."""

import zipfile

import pytest

from runner.spark import SparkSettings, local_cores
from stack.connect_driver import WARMUP_FORMAT, WARMUP_MERGES
from stack.spark_connect import DELTA_PLUGINS, SparkConnectServer, main, server_conf

SETTINGS = SparkSettings(
    jars=("/jars/delta-spark.jar", "/jars/postgresql.jar"),
    s3_endpoint_url="http://s3:8333", s3_access_key="id", s3_secret_key="secret",
    warehouse_dir="s3a://cdm-lake/warehouse",
    metastore_url="jdbc:postgresql://postgres:5432/metastore", metastore_user="csep",
    metastore_password="pw")


def test_server_conf_extends_the_runner_conf():
    conf = server_conf(SETTINGS, "0.0.0.0", 15002)
    runner = SETTINGS.spark_conf()

    assert {k: v for k, v in conf.items() if k in runner and k != "spark.app.name"} == {
        k: v for k, v in runner.items() if k != "spark.app.name"}
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.connect.grpc.binding.address"] == "0.0.0.0"
    assert conf["spark.connect.grpc.binding.port"] == "15002"
    assert conf["spark.driver.memory"] == "4g"
    assert conf["spark.sql.artifact.isolation.enabled"] == "false"
    assert not set(DELTA_PLUGINS) & set(conf)


def test_the_servers_heap_is_a_setting():
    assert server_conf(SETTINGS, "127.0.0.1", 4000, memory="12g")["spark.driver.memory"] == "12g"


def test_warmup_merges_reach_the_driver_as_a_property():
    assert server_conf(SETTINGS, "127.0.0.1", 4000)[WARMUP_MERGES] == "0"
    assert server_conf(SETTINGS, "127.0.0.1", 4000, warmup_merges=30)[WARMUP_MERGES] == "30"
    with pytest.raises(ValueError, match="0 or more"):
        server_conf(SETTINGS, "127.0.0.1", 4000, warmup_merges=-1)


def test_the_server_command_refuses_negative_warmup(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--warmup-merges", "-2"])
    assert exited.value.code == 2
    assert "--warmup-merges: must be 0 or more, not -2" in capsys.readouterr().err


def test_the_server_command_refuses_a_warmup_that_is_not_a_number(capsys, monkeypatch):
    monkeypatch.setenv("CSEP_SPARK_CONNECT_WARMUP", "lots")
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "not a number of MERGEs: 'lots'" in capsys.readouterr().err


def test_delta_plugins_come_with_their_jars():
    plugins = ("/jars/delta-connect-server_4.0_2.13-4.4.0.jar", "/jars/protobuf-java-3.25.1.jar")
    conf = server_conf(SETTINGS, "127.0.0.1", 4000, plugins)

    assert conf["spark.connect.extensions.relation.classes"] == (
        "org.apache.spark.sql.connect.delta.DeltaRelationPlugin")
    assert conf["spark.connect.extensions.command.classes"] == (
        "org.apache.spark.sql.connect.delta.DeltaCommandPlugin")
    assert conf["spark.jars"].split(",") == list(SETTINGS.jars + plugins)


def test_a_connect_url_cannot_be_the_servers_own_master():
    with pytest.raises(ValueError, match="needs a classic master"):
        server_conf(SparkSettings(master="sc://elsewhere:15002"), "127.0.0.1", 4000)


def test_a_standalone_cluster_can_be_the_servers_master():
    conf = server_conf(SparkSettings(master="spark://127.0.0.1:7077"), "127.0.0.1", 4000)
    assert conf["spark.master"] == "spark://127.0.0.1:7077"
    # Executors elsewhere reach the driver where SPARK_LOCAL_IP (or the host's name)
    # says, not on a loopback binding meant for local[*].
    assert "spark.driver.bindAddress" not in conf


def _jar(path, *entries):
    with zipfile.ZipFile(path, "w") as archive:
        for entry in entries:
            archive.writestr(entry, "")
    return str(path)


def test_only_jdbc_drivers_go_before_sparks_own_classes(tmp_path):
    driver = _jar(tmp_path / "postgresql.jar", "META-INF/services/java.sql.Driver",
                  "org/postgresql/Driver.class")
    bundle = _jar(tmp_path / "bundle.jar", "org/slf4j/LoggerFactory.class")
    delta = _jar(tmp_path / "delta-spark.jar", "io/delta/sql/DeltaSparkSessionExtension.class")
    conf = SparkSettings(jars=(bundle, delta, driver)).spark_conf()

    assert conf["spark.jars"].split(",") == [bundle, delta, driver]
    assert conf["spark.driver.extraClassPath"] == driver
    assert "spark.driver.extraClassPath" not in SparkSettings(jars=(bundle,)).spark_conf()


@pytest.mark.parametrize(("master", "cores"), [("local", 1), ("local[3]", 3),
                                               ("local[2,4]", 2), ("local[0]", 1)])
def test_local_cores(master, cores):
    assert local_cores(master) == cores


def test_delta_rebuilds_table_state_in_as_many_tasks_as_local_cores():
    assert SparkSettings(master="local[3]").spark_conf()[
        "spark.databricks.delta.snapshotPartitions"] == "3"
    assert "spark.databricks.delta.snapshotPartitions" not in SparkSettings(
        master="spark://master:7077").spark_conf()


ICEBERG = SparkSettings(jars=("/jars/iceberg-spark-runtime.jar",), table_format="iceberg",
                        iceberg_catalog_url="http://catalog:8181/api/catalog",
                        iceberg_credential="client:catalog-secret")


def test_a_server_on_iceberg_has_no_users_catalog_no_delta_and_no_event_log(tmp_path):
    conf = server_conf(ICEBERG, "127.0.0.1", 4000)

    assert conf["spark.sql.extensions"] == (
        "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
    assert conf["spark.jars"] == "/jars/iceberg-spark-runtime.jar"
    assert conf[WARMUP_FORMAT] == "iceberg"
    assert conf["spark.eventLog.enabled"] == "false" and conf["spark.ui.enabled"] == "false"
    assert not [k for k in conf if k.startswith("spark.sql.catalog")
                or k == "spark.sql.defaultCatalog" or "delta" in k.lower()]
    assert "catalog-secret" not in repr(conf)
    with pytest.raises(ValueError, match="Delta's Connect plug-ins"):
        server_conf(ICEBERG, "127.0.0.1", 4000, ("/jars/delta-connect-server.jar",))

    # Its event log would hold the sessions' catalog credential: refused.
    server = SparkConnectServer(ICEBERG, tmp_path, port=4000)
    server.conf["spark.eventLog.enabled"] = "true"
    with pytest.raises(ValueError, match="catalog credential"):
        server.start()
    assert server_conf(SETTINGS, "127.0.0.1", 4000)[WARMUP_FORMAT] == "delta"
