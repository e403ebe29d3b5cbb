"""The Spark Connect server's configuration is the classic runner's, plus the gRPC binding."""

import pytest

from runner.spark import SparkSettings
from stack.spark_connect import DELTA_PLUGINS, server_conf

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
    assert not set(DELTA_PLUGINS) & set(conf)


def test_delta_plugins_come_with_their_jars():
    plugins = ("/jars/delta-connect-server_4.0_2.13-4.4.0.jar", "/jars/protobuf-java-3.25.1.jar")
    conf = server_conf(SETTINGS, "127.0.0.1", 4000, plugins)

    assert conf["spark.connect.extensions.relation.classes"] == (
        "org.apache.spark.sql.connect.delta.DeltaRelationPlugin")
    assert conf["spark.connect.extensions.command.classes"] == (
        "org.apache.spark.sql.connect.delta.DeltaCommandPlugin")
    assert conf["spark.jars"].split(",") == list(SETTINGS.jars + plugins)
    assert conf["spark.driver.extraClassPath"].split(":") == list(SETTINGS.jars + plugins)


def test_a_connect_url_cannot_be_the_servers_own_master():
    with pytest.raises(ValueError, match="needs a classic master"):
        server_conf(SparkSettings(master="sc://elsewhere:15002"), "127.0.0.1", 4000)
