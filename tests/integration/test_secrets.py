"""Credentials stay out of every command line while a runner imports against the stack.

``/proc/<pid>/cmdline`` is readable by every local user, so a secret on any process's
command line (the runner, the JVM pyspark starts, the Spark Connect server, the stack's
own servers) is a leak. Each test runs a real CheckM2 import and, while it runs, reads
the command line of every process on the machine looking for the stack's secrets.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

from contract import result as results
from contract.spec import namespace_prefix
from contract.store import SpecStore
from tests.integration.test_runner import REPORT_A, checkm2_spec, upload

USER = "secretive"


@pytest.fixture(scope="module")
def s3(stack):
    stack.s3.create_bucket("cts-out")
    return stack.s3.client()


@pytest.fixture(scope="module")
def store(stack, s3):
    return SpecStore(f"s3://{stack.lake_bucket}/secret-specs", s3)


def command_lines() -> dict[int, str]:
    """Every readable process's command line, arguments joined by spaces."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:  # the process ended meanwhile
                continue
            found[int(entry.name)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return found


def run_while_scanning(argv: list[str], env: dict[str, str], secrets: list[str],
                       timeout: float = 600) -> tuple[subprocess.CompletedProcess, list[str], set[str]]:
    """Run ``argv`` to its end, scanning all command lines every 50 ms meanwhile.

    Returns the finished process, the command lines that held a secret (with the secret
    replaced, so a failing assertion does not print it) and every command line seen.
    """
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    leaks: list[str] = []
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            for pid, line in command_lines().items():
                seen.add(line)
                for index, secret in enumerate(secrets):
                    if secret in line:
                        leaks.append(f"pid {pid}: " + line.replace(secret, f"<secret {index}>"))
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr), leaks, seen


def _spec(s3, job_id: str):
    report = upload(s3, "cts-out", f"{job_id}/quality_report.tsv", REPORT_A)
    spec = checkm2_spec(job_id, [report])
    return attrs.evolve(spec, job=attrs.evolve(spec.job, user=USER,
                                               namespace_prefix=namespace_prefix(USER)))


def _import_without_leaks(stack, store, spec, env) -> set[str]:
    uri = store.put_spec(spec)
    done, leaks, seen = run_while_scanning([sys.executable, "-m", "runner", uri], env,
                                           stack.secrets())
    assert done.returncode == 0, done.stderr[-6000:]
    result = store.results(uri)[-1]
    assert result.status == results.Status.SUCCEEDED
    # The import went through S3 and the metastore: the credentials did reach Spark.
    assert [c.table for c in result.delta_commits] == [
        f"{namespace_prefix(USER)}checkm2.quality_report"] * len(result.delta_commits)
    assert result.delta_commits
    assert leaks == []
    return seen


def test_no_secret_on_a_command_line_during_a_classic_import(stack, s3, store, runner_env):
    seen = _import_without_leaks(stack, store, _spec(s3, "secrets-classic"), runner_env)

    # The scan did see the runner's JVM, whose command line carries the Spark conf.
    jvm = [line for line in seen if "SparkSubmit" in line and "cdm-spark-events-runner" in line]
    assert jvm
    assert any("EnvironmentVariableCredentialsProvider" in line for line in jvm)


def test_no_secret_on_a_command_line_during_a_spark_connect_import(
        stack, s3, store, runner_env, spark_connect):
    env = {**runner_env, "CSEP_SPARK_MASTER": spark_connect.url}
    seen = _import_without_leaks(stack, store, _spec(s3, "secrets-connect"), env)

    assert any("SparkConnectServer" in line for line in seen)

