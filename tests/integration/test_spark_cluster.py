"""Imports on a real Spark standalone cluster: a master and two workers of the stack.

Runners are the real ``python -m runner`` with ``CSEP_SPARK_MASTER=spark://...``; the
witnesses are independent of the runner: the cluster's own JSON endpoints (the master's
applications, the workers' executors), the executors' logs on the workers (the tasks
they ran), and delta-rs reading the rows from S3. Each worker has 2 cores and 1g, so an
application gets one executor (of 1g) per worker.

The cluster is this module's alone: started by its fixture, stopped when the module ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract import result as results
from contract.spec import namespace_prefix
from contract.store import SpecStore
from runner.spark import SparkSettings
from stack import jars
from stack.local import subprocess_env
from stack.spark_connect import SparkConnectServer
from tests.integration.test_runner import (
    REPORT_A,
    checkm2_spec,
    delta_rows,
    make_spec,
    run_runner,
    run_spec,
    upload,
)

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_IMPORTERS = ROOT / "tests" / "fixtures" / "cluster_importers"
USER = "clusterer"
CONNECT_USER = "connector"
RUNNER_APP = "cdm-spark-events-runner"
CONNECT_APP = "cdm-spark-events-connect"
EXPECTED_CHECKM2 = [("GCA_1", 98.5), ("GCA_2", 75.0)]


@pytest.fixture(scope="module")
def cluster(stack):
    cluster = stack.start_spark_cluster()
    yield cluster
    stack.stop_spark_cluster()


@pytest.fixture(scope="module")
def store(stack, s3):
    return SpecStore(f"s3://{stack.lake_bucket}/cluster-specs", s3)


@pytest.fixture(scope="module")
def markers(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster-markers")


@pytest.fixture(scope="module")
def env(stack, cluster, markers):
    """A classic runner on the cluster, with the built-in and the cluster test importers."""
    return {**subprocess_env(stack.cluster_runner_env()),
            "CSEP_IMPORTER_DIRS": f"@builtin:{CLUSTER_IMPORTERS}",
            "CSEP_TEST_MARKERS": str(markers)}


def wait_for(what: str, check, timeout: float = 300.0):
    """Poll ``check`` until it returns something true; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise TimeoutError(f"no {what} within {timeout:.0f}s")


def tasks_finished(executors) -> int:
    """Tasks the executors' own logs (on their workers) say they finished."""
    return sum(e.stderr.read_text().count("Finished task") for e in executors
               if e.stderr.exists())


def tasks_started(executor) -> int:
    return executor.stderr.read_text().count("Running task") if executor.stderr.exists() else 0


def held_runner(store, spec, env, markers):
    """Start a runner of a ``csep_test_cluster`` spec; return it, its spec's URI and what
    its importer wrote once it had its session (it then waits for the go-ahead)."""
    uri = store.put_spec(spec)
    runner = subprocess.Popen([sys.executable, "-m", "runner", uri], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started_file = markers / f"{spec.job.id}.started"

    def started():
        if runner.poll() is not None:
            raise AssertionError(f"the runner exited with {runner.returncode}: "
                                 f"{runner.stderr.read()[-4000:]}")
        return started_file.exists() and json.loads(started_file.read_text())

    return runner, uri, wait_for(f"{started_file}", started)


def running_executors(cluster, app_id: str, count: int):
    """Wait until ``app_id`` has ``count`` running executors, on as many workers."""
    def running():
        found = [e for e in cluster.executors(app_id) if not e.finished]
        return found if len({e.worker_id for e in found}) == count else None

    return wait_for(f"{count} executors of {app_id}", running)


def cluster_spec(job_id: str, kind: str):
    return make_spec(job_id, f"example.org/csep-tests/cluster-{kind}", f"cluster_{kind}",
                     "csep_test_cluster", [], user=USER)


def cluster_rows(stack) -> list[tuple[str, int]]:
    rows = delta_rows(stack, f"{namespace_prefix(USER)}cluster", "rows", "id")
    return sorted((r["cts_job_id"], r["id"]) for r in rows)


def test_a_classic_runner_imports_checkm2_on_the_workers(stack, cluster, s3, store, env):
    """The built-in CheckM2 importer, in a runner whose master is the cluster: the
    runner's application had executors on both workers, their logs show the tasks they
    ran, and delta-rs reads the rows."""
    before = {app["id"] for app in cluster.state()["completedapps"]}
    report = upload(s3, "cts-out", "job-cluster-checkm2/quality_report.tsv", REPORT_A)
    result = run_spec(store, checkm2_spec("job-cluster-checkm2", [report], user=USER), env, 0)
    assert result.status == results.Status.SUCCEEDED
    assert [c.operation for c in result.delta_commits] == ["CREATE TABLE", "MERGE"]

    [app] = wait_for("the runner's application among the completed", lambda: [
        a for a in cluster.state()["completedapps"] if a["id"] not in before])
    assert app["name"] == RUNNER_APP
    executors = cluster.executors(app["id"])
    assert len({e.worker_id for e in executors}) == 2, executors
    assert tasks_finished(executors) > 0
    rows = delta_rows(stack, f"{namespace_prefix(USER)}checkm2", "quality_report",
                      "genome_name")
    assert [(r["genome_name"], r["completeness"]) for r in rows] == EXPECTED_CHECKM2


def test_an_import_gets_its_executor_cores_and_survives_a_worker_killed(stack, cluster,
                                                                         store, env, markers):
    """``get_spark(executor_cores=2)``: the session's ``spark.executor.cores`` is 2, and
    the master grants the application 2 cores on each worker it has an executor on (one
    runner checks both: each costs a driver and two executors).

    Then a worker is SIGKILLed (with its executor) while its executor runs the import's
    tasks. Spark runs the lost tasks again on the other worker's executor and the import
    succeeds; or the attempt fails as the infrastructure's or a temporary failure, and
    the spec run again (as the dispatcher would) imports it. Either way each row is in
    the table once."""
    job = "job-cluster-kill"
    runner, uri, started = held_runner(store, cluster_spec(job, "slow"), env, markers)
    victim = None
    try:
        assert started["executor_cores"] == "2"
        executors = running_executors(cluster, started["app_id"], 2)
        state = cluster.state()
        [app] = [a for a in state["activeapps"] if a["id"] == started["app_id"]]
        assert (app["name"], app["cores"]) == (RUNNER_APP, 2 * len(executors))
        used = {w["id"]: w["coresused"] for w in state["workers"] if w["state"] == "ALIVE"}
        assert {used[e.worker_id] for e in executors} == {2}

        before = {e.worker_index: tasks_started(e) for e in executors}
        (markers / f"{job}.go").touch()

        def task_running():
            assert runner.poll() is None, runner.stderr.read()[-6000:]
            return next((e for e in executors
                         if tasks_started(e) > before[e.worker_index]), None)

        victim = wait_for("a task running on an executor", task_running).worker_index
        cluster.kill_worker(victim)
        code = runner.wait(timeout=600)
        log = runner.stderr.read()
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.wait()
        runner.stderr.close()
        if victim is not None:
            cluster.start_worker(victim)
    # Which of the two ways it went, for the reader of the test's output.
    print(f"worker {victim} killed during the import; the runner exited {code}")
    if code != 0:
        assert code in (69, 75), log[-6000:]
        again = run_runner(uri, env)
        assert again.returncode == 0, again.stderr[-6000:]
    assert store.results(uri)[-1].status == results.Status.SUCCEEDED
    assert [r for r in cluster_rows(stack) if r[0] == job] == [(job, n) for n in range(8)]


def test_a_spark_connect_server_on_the_cluster_serves_a_runner(stack, cluster, s3, store,
                                                               env):
    """A Spark Connect server whose master is the cluster (its configuration accepts a
    ``spark://`` master); a Connect runner's CheckM2 import runs on the server's executors,
    on the workers."""
    settings = SparkSettings.from_env(stack.cluster_runner_env())
    assert settings.master == cluster.url
    plugins = tuple(sorted(str(p) for p in jars.ensure("spark-connect").glob("*.jar")))
    server = SparkConnectServer(settings, stack.base_dir / "spark-connect-on-cluster",
                                delta_connect_jars=plugins, memory="1g",
                                environment=cluster.client_env())
    assert server.conf["spark.master"] == cluster.url
    server.conf.update(cluster.client_defaults())
    with server:
        [app] = [a for a in cluster.state()["activeapps"] if a["name"] == CONNECT_APP]
        executors = running_executors(cluster, app["id"], 2)
        finished_before = tasks_finished(executors)
        report = upload(s3, "cts-out", "job-cluster-connect/quality_report.tsv", REPORT_A)
        connect_env = {**env, "CSEP_SPARK_MASTER": server.url}
        spec = checkm2_spec("job-cluster-connect", [report], user=CONNECT_USER)
        result = run_spec(store, spec, connect_env, 0)
        assert result.status == results.Status.SUCCEEDED
        assert tasks_finished(executors) > finished_before
    rows = delta_rows(stack, f"{namespace_prefix(CONNECT_USER)}checkm2",
                      "quality_report", "genome_name")
    assert [(r["genome_name"], r["completeness"]) for r in rows] == EXPECTED_CHECKM2
