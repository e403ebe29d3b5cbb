"""Credentials stay out of every command line while a runner imports against the stack.

``/proc/<pid>/cmdline`` is readable by every local user, so a secret on any process's
command line (the runner, the JVM pyspark starts, the Spark Connect server, the stack's
own servers) is a leak. Each test runs a real CheckM2 import and, while it runs, reads
the command line of every process on the machine looking for the stack's secrets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

from contract import result as results
from contract.result import to_yaml
from contract.spec import namespace_prefix
from contract.store import SpecStore
from tests.integration.dispatcher_lane import FIXTURES, headers, wait_until
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


def run_while_scanning(
        argv: list[str], env: dict[str, str], secrets: list[str], timeout: float = 600,
) -> tuple[subprocess.CompletedProcess, list[str], set[str]]:
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

    # The scan did see the server's JVM and its driver.
    assert any("SparkSubmit" in line and "connect_driver.py" in line for line in seen)


# -- the real dispatcher: what importers see, what leaves the processes -----------------------


def test_an_importer_run_by_the_dispatcher_sees_no_cts_token(stack, lane):
    lane.dispatcher()
    lane.job("env-1", "env_dump")
    lane.complete("env-1")
    wait_until(lambda: lane.done("env-1"), 60, "the env_dump import")

    seen = json.loads((lane.state_dir / "env-1.env").read_text())
    assert "CSEP_CTS_TOKEN" not in seen
    assert stack.cts.token not in json.dumps(seen)
    assert not [name for name in seen if name.startswith(("CSEP_KAFKA", "CSEP_CTS"))]
    # What the runner does need did arrive.
    assert seen["AWS_SECRET_ACCESS_KEY"] == stack.s3.secret_key
    assert seen["CSEP_METASTORE_PASSWORD"] == stack.postgres.password


def test_a_secret_in_an_importer_error_reaches_no_result_dead_letter_or_log(
        stack, lane, runner_env):
    dispatcher = lane.dispatcher()
    lane.job("leak-1", "leaky")
    lane.complete("leak-1")
    [record] = lane.dead_letters(1, timeout=120)
    assert lane.attempts("leak-1") == 1
    secrets = [stack.s3.secret_key, stack.postgres.password, stack.cts.token]

    [result] = lane.results("leak-1")
    written = to_yaml(result)
    assert result.error_type == "ConnectionError"
    assert result.message == "job leak-1: cannot connect with key=<redacted> password=<redacted>"
    assert "cannot connect with key=<redacted> password=<redacted>" in result.traceback

    value = json.loads(record.value)
    assert "connecting with key=<redacted> password=<redacted>" in value["error_dlq_trace"]
    dlq_text = record.value.decode() + json.dumps(headers(record))

    dispatcher_log = dispatcher.log(tail=10**7)
    assert "leak-1" in dispatcher_log

    # The runner's own log lines, as they leave the process (not only their tail).
    spec_uri = lane.store.spec_uri("leak-1", "t-leak-1")
    rerun = subprocess.run(
        [sys.executable, "-m", "runner", spec_uri], capture_output=True, text=True, timeout=120,
        env={**runner_env, "CSEP_IMPORTER_DIRS": f"@builtin:{FIXTURES}",
             "CSEP_TEST_STATE_DIR": str(lane.state_dir)})
    assert rerun.returncode == 70
    # Its log lines; what an importer prints to stderr itself is not a log line (a tail of
    # it reaches the dispatcher, which redacts it: see the DLQ trace above).
    log_lines = [line for line in rerun.stderr.splitlines() if line.startswith("{")]
    runner_log = [json.loads(line) for line in log_lines]
    assert {"job leak-1: connecting with key=<redacted> password=<redacted>",
            "failed: ConnectionError: job leak-1: cannot connect with key=<redacted> "
            "password=<redacted>"} <= {line["message"] for line in runner_log}

    for index, secret in enumerate(secrets):
        for where, text in [("result", written), ("DLQ record", dlq_text),
                            ("dispatcher log", dispatcher_log),
                            ("runner log", "\n".join(log_lines))]:
            assert secret not in text, f"secret {index} in the {where}"
