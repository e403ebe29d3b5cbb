"""A Spark Connect runner whose server does not answer fails in seconds, naming the URL."""

import time

import pytest

from runner.spark import SparkSettings, SparkUnavailable, spark_factory
from stack.process import free_ports


def test_a_refused_connection_raises_spark_unavailable_within_the_timeout():
    (port,) = free_ports(1)
    get_spark = spark_factory(SparkSettings(master=f"sc://127.0.0.1:{port}/;token=t0ps3cret"),
                              connect_timeout=2)

    started = time.monotonic()
    with pytest.raises(SparkUnavailable) as caught:
        get_spark()

    assert time.monotonic() - started < 60  # seconds, not pyspark's minutes of retries
    assert caught.value.url == f"sc://127.0.0.1:{port}"
    assert str(caught.value) == (
        f"Spark Connect server sc://127.0.0.1:{port} unreachable: no connection within 2s")
    assert isinstance(caught.value, ConnectionError)


def test_a_listening_port_is_accepted_at_once_and_a_closed_one_only_after_the_timeout():
    import socket

    from runner.spark import _accepts_connections

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert _accepts_connections("127.0.0.1", port, timeout=5)
    started = time.monotonic()
    assert not _accepts_connections("127.0.0.1", port, timeout=0.5)
    assert time.monotonic() - started >= 0.3


def test_the_failure_probe_names_the_service_that_refuses_connections():
    import socket

    from runner.probes import unreachable

    with socket.create_server(("127.0.0.1", 0)) as s3, socket.create_server(
            ("127.0.0.1", 0)) as metastore:
        settings = SparkSettings(
            s3_endpoint_url=f"http://127.0.0.1:{s3.getsockname()[1]}",
            metastore_url=f"jdbc:postgresql://127.0.0.1:{metastore.getsockname()[1]}/m")
        assert unreachable(settings) is None
        (closed,) = free_ports(1)
        spark = SparkSettings(master=f"sc://127.0.0.1:{closed}", s3_endpoint_url=(
            settings.s3_endpoint_url), metastore_url=settings.metastore_url)
        service, reason = unreachable(spark)
    assert service == "spark"
    assert reason.startswith(f"127.0.0.1:{closed}: ")
