"""The ``iceberg`` table format's Spark configuration: the user's catalog, no secret."""

import re
import xml.etree.ElementTree as ET

import pytest

from runner.snapshots import SNAPSHOT_PROPERTY, counts
from runner.spark import REDACTION_REGEX, SparkSettings
from stack import jars
from tests.unit.test_jar_profiles import NS, POM, pom_property

ENV = {
    "CSEP_TABLE_FORMAT": "iceberg",
    "CSEP_SPARK_JARS": "/jars/spark/hadoop-aws.jar,/jars/spark/bundle.jar",
    "CSEP_ICEBERG_JARS": "/jars/iceberg/iceberg-spark-runtime.jar",
    "CSEP_S3_ENDPOINT_URL": "http://s3:8333",
    "AWS_ACCESS_KEY_ID": "key-id", "AWS_SECRET_ACCESS_KEY": "s3-secret",
    "CSEP_ICEBERG_CATALOG_URL": "http://polaris:8181/api/catalog",
    "CSEP_ICEBERG_CREDENTIAL": "client:catalog-secret",
    # Delta's settings, present in a shared environment, are not used.
    "CSEP_METASTORE_URL": "jdbc:postgresql://pg/metastore", "CSEP_METASTORE_PASSWORD": "pw",
    "CSEP_WAREHOUSE_DIR": "s3a://lake/warehouse",
}


def test_the_session_sees_the_users_catalog_as_my_and_by_name():
    settings = SparkSettings.from_env(ENV)
    conf = settings.spark_conf(user="alice")

    assert settings.jars[-1] == "/jars/iceberg/iceberg-spark-runtime.jar"
    assert conf["spark.sql.extensions"] == (
        "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
    assert conf["spark.sql.defaultCatalog"] == "my"
    for name in ("my", "alice"):
        prefix = f"spark.sql.catalog.{name}"
        assert conf[prefix] == "org.apache.iceberg.spark.SparkCatalog"
        assert conf[f"{prefix}.type"] == "rest"
        assert conf[f"{prefix}.uri"] == "http://polaris:8181/api/catalog"
        assert conf[f"{prefix}.oauth2-server-uri"] == (
            "http://polaris:8181/api/catalog/v1/oauth/tokens")
        assert conf[f"{prefix}.warehouse"] == "user_alice"
        assert conf[f"{prefix}.scope"] == "PRINCIPAL_ROLE:ALL"
        assert conf[f"{prefix}.token-refresh-enabled"] == "true"
        assert conf[f"{prefix}.s3.endpoint"] == "http://s3:8333"
        assert conf[f"{prefix}.s3.path-style-access"] == "true"
    # No Delta, no Hive.
    assert not [k for k in conf if "delta" in k.lower() or "hive" in k or "jdo" in k
                or k in ("spark.sql.warehouse.dir", "spark.sql.catalog.spark_catalog")]


def test_no_credential_is_in_the_configuration_the_jvm_starts_with():
    settings = SparkSettings.from_env(ENV)
    text = repr(settings.spark_conf(user="alice")) + repr(settings)

    assert "catalog-secret" not in text and "s3-secret" not in text and "'pw'" not in text
    assert settings.catalog_secrets("alice") == {
        "spark.sql.catalog.my.credential": "client:catalog-secret",
        "spark.sql.catalog.alice.credential": "client:catalog-secret"}
    # Spark redacts the credential in its UI and event log.
    assert settings.spark_conf(user="alice")["spark.redaction.regex"] == REDACTION_REGEX
    assert all(re.search(REDACTION_REGEX, key) for key in settings.catalog_secrets("alice"))


def test_the_warehouse_template_and_scope_are_settings():
    settings = SparkSettings.from_env({**ENV, "CSEP_ICEBERG_WAREHOUSE": "wh-{user}-cdm",
                                       "CSEP_ICEBERG_SCOPE": ""})
    conf = settings.spark_conf(user="bob")
    assert conf["spark.sql.catalog.my.warehouse"] == "wh-bob-cdm"
    assert "spark.sql.catalog.my.scope" not in conf


@pytest.mark.parametrize("change, message", [
    ({"CSEP_TABLE_FORMAT": "hudi"}, "CSEP_TABLE_FORMAT='hudi'"),
    ({"CSEP_ICEBERG_WAREHOUSE": "shared"}, "must contain {user}"),
])
def test_unusable_settings_are_refused_naming_the_variable(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SparkSettings.from_env({**ENV, **change})


def test_an_iceberg_session_needs_its_user_and_a_catalog():
    from runner.spark import spark_factory

    for master in ("local[1]", "sc://127.0.0.1:1"):
        get_spark = spark_factory(SparkSettings.from_env({**ENV, "CSEP_SPARK_MASTER": master}))
        with pytest.raises(ValueError, match="no user is known yet"):
            get_spark()
    with pytest.raises(ValueError, match="CSEP_ICEBERG_CATALOG_URL"):
        SparkSettings.from_env({**ENV, "CSEP_ICEBERG_CATALOG_URL": ""}).spark_conf(user="a")


def test_without_a_user_the_configuration_has_iceberg_and_no_users_catalog():
    # A Spark Connect server's: every session gets its own user's catalog when it opens.
    settings = SparkSettings.from_env({**ENV, "CSEP_SPARK_MASTER": "sc://connect:15002"})
    assert settings.is_connect and settings.is_iceberg
    conf = SparkSettings.from_env(ENV).spark_conf()

    assert conf["spark.sql.extensions"] == (
        "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
    assert conf["spark.redaction.regex"] == REDACTION_REGEX
    assert not [k for k in conf if k.startswith("spark.sql.catalog")
                or k == "spark.sql.defaultCatalog" or "delta" in k.lower()]


def test_a_session_is_given_its_users_catalog_credential_and_default_catalog():
    settings = SparkSettings.from_env(ENV)
    conf = settings.session_conf("alice")

    assert conf == {**settings.catalog_conf("alice"), **settings.catalog_secrets("alice"),
                    "spark.sql.defaultCatalog": "my"}
    assert conf["spark.sql.catalog.alice.credential"] == "client:catalog-secret"
    assert {k.split(".")[3] for k in conf if k.startswith("spark.sql.catalog.")} == {
        "my", "alice"}


def test_delta_stays_the_default():
    conf = SparkSettings.from_env({**ENV, "CSEP_TABLE_FORMAT": ""}).spark_conf()
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert not [k for k in conf if "iceberg" in k or k.startswith("spark.sql.catalog.my")]


def test_the_iceberg_runtime_is_resolved_for_the_spark_and_scala_of_delta():
    assert "iceberg" in jars.PROFILES
    profile = next(p for p in ET.parse(POM).getroot().iterfind("m:profiles/m:profile", NS)
                   if p.find("m:id", NS).text == "iceberg")
    artifact = profile.find("m:dependencies/m:dependency/m:artifactId", NS).text
    assert artifact == "iceberg-spark-runtime-${delta.spark.suffix}"
    assert pom_property(POM, "delta.spark.suffix") == "4.0_2.13"
    # 1.11 is the first release whose Spark runtime copies the session's
    # spark.sql.iceberg.snapshot-property.* settings into each snapshot's summary: the
    # attempt's marker (runner/snapshots.py).
    version = tuple(int(part) for part in pom_property(POM, "iceberg.version").split("."))
    assert version >= (1, 11, 0)


def test_a_catalog_that_accepts_no_connection_is_a_refusal_without_the_credential():
    from runner import catalog
    from stack.process import free_ports

    (port,) = free_ports(1)
    settings = SparkSettings.from_env({**ENV, "CSEP_ICEBERG_CATALOG_URL":
                                       f"http://127.0.0.1:{port}"})
    reason = catalog.refusal(settings, timeout=2)

    assert reason.startswith(f"http://127.0.0.1:{port}/v1/oauth/tokens unreachable")
    assert "catalog-secret" not in reason
    assert catalog.refusal(SparkSettings.from_env({**ENV, "CSEP_TABLE_FORMAT": "delta"})) is None
    assert "no catalog credential" in catalog.refusal(
        SparkSettings.from_env({**ENV, "CSEP_ICEBERG_CREDENTIAL": ""}))


def test_a_snapshot_is_listed_with_the_counts_of_its_summary():
    summary = {"added-records": "4", "deleted-records": "2", "total-records": "5",
               "changed-partition-count": "1", "spark.app.id": "local-1765", "engine-version":
               "4.0.1", "iceberg-version": "Apache Iceberg 1.11.0",
               "csep-attempt": "csep-attempt:0f6f", "engine-name": "spark"}
    assert counts(summary) == {"added-records": "4", "deleted-records": "2",
                               "total-records": "5", "changed-partition-count": "1"}
    assert counts(None) == {}
    assert SNAPSHOT_PROPERTY == "spark.sql.iceberg.snapshot-property.csep-attempt"
