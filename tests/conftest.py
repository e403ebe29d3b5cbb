"""Shared fixtures: one local stack of real servers per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from stack.kube import KubeApiServer
from stack.local import LocalStack, subprocess_env
from stack.spark_connect import SparkConnectServer

#: Warm-up MERGEs of the tests' Spark Connect server: enough to run the warm-up on every
#: start (and restart), a few seconds; a deployed server runs many more.
SPARK_CONNECT_WARMUP = 3


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """Kafka, SeaweedFS S3, PostgreSQL and the CTS double, started once per session."""
    with LocalStack(keep_data=bool(os.environ.get("CSEP_KEEP_STACK_DATA")),
                    spark_connect_warmup=SPARK_CONNECT_WARMUP) as local:
        yield local


@pytest.fixture(scope="session")
def runner_env(stack: LocalStack) -> dict[str, str]:
    """The full environment of a runner subprocess pointed at the stack."""
    return subprocess_env(stack.runner_env())


@pytest.fixture(scope="session")
def spark_connect(stack: LocalStack) -> SparkConnectServer:
    """A Spark Connect server on the stack, started only by the tests that ask for it."""
    return stack.start_spark_connect()


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    """A real Kubernetes API server (etcd + kube-apiserver, RBAC on), started once per
    session by the tests that ask for it; no controller, scheduler or kubelet runs."""
    with KubeApiServer(tmp_path_factory.mktemp("kube")) as server:
        yield server


def run_python(code: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process (its own JVM when it uses Spark)."""
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)
