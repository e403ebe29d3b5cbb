"""The Delta Connect plug-in is built for the Delta, Spark and Scala the project runs."""

import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

import pyspark

from stack.paths import DELTA_CONNECT_MODULE, POM

NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def pom_property(pom: Path, name: str) -> str:
    return ET.parse(pom).getroot().find(f"m:properties/m:{name}", NS).text


def test_the_plugin_is_built_from_the_pinned_delta_release():
    module = ET.parse(DELTA_CONNECT_MODULE / "pom.xml").getroot()
    assert module.find("m:version", NS).text == pom_property(POM, "delta.version") == (
        version("delta-spark"))
    assert module.find("m:artifactId", NS).text == (
        f"delta-connect-server_{pom_property(POM, 'delta.spark.suffix')}")


def test_the_plugin_compiles_against_the_spark_and_scala_of_the_pyspark_wheel():
    module_pom = DELTA_CONNECT_MODULE / "pom.xml"
    jars = Path(pyspark.__file__).parent / "jars"
    spark, scala = pom_property(module_pom, "spark.version"), pom_property(module_pom,
                                                                          "scala.version")
    assert spark == version("pyspark")
    assert (jars / f"spark-connect_2.13-{spark}.jar").exists()
    assert (jars / f"scala-library-{scala}.jar").exists()
