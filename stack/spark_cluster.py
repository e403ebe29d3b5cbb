"""A Spark standalone cluster: one master and its workers, from pyspark's own distribution.

``bin/spark-class org.apache.spark.deploy.master.Master`` and ``...deploy.worker.Worker``
of :func:`stack.spark_connect.spark_home`, each bound to 127.0.0.1 on free ports
(``SPARK_LOCAL_IP`` binds the web UIs and the executors there too), with its work
directory, logs and Spark configuration under the cluster's data directory. The cluster is
healthy when the master's JSON endpoint (``http://127.0.0.1:<webui>/json/``) is ``ALIVE``
and lists every worker ``ALIVE``.

A runner uses it with ``CSEP_SPARK_MASTER=spark://...`` (:meth:`SparkCluster.client_env`),
and so does a Spark Connect server (``python -m stack.spark_connect`` with the same
variable). Executors are the workers' children and inherit their environment: the S3
credentials the workers are given are how S3A on the executors authenticates, as the
driver's does (``runner/spark.py``), without a credential in any Spark property. The jars
(Delta, hadoop-aws, the AWS SDK) reach the executors from the driver through
``spark.jars``; the workers need nothing but Spark itself.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import attrs

from stack.paths import ROOT
from stack.process import ServerProcess, free_ports
from stack.spark_connect import STDERR_WARNINGS, spark_home

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
#: Each daemon's own heap (master, worker); executors get ``spark.executor.memory``.
DAEMON_MEMORY = "256m"
WORKER_TIMEOUT = 15

#: The daemons' logs (their stderr) and the executors' (``<work dir>/<app>/<id>/stderr``):
#: warnings, plus the master's and workers' registrations and each task an executor
#: runs and finishes, which is how a reader sees where the work ran.
LOGGING = STDERR_WARNINGS + """\
logger.deploy.name = org.apache.spark.deploy
logger.deploy.level = info
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = info
"""


@attrs.frozen
class ExecutorOnWorker:
    """One executor of an application, as its worker's JSON endpoint lists it."""

    worker_id: str
    #: The worker's index in the cluster (:meth:`SparkCluster.kill_worker` takes it).
    worker_index: int
    app_id: str
    executor_id: int
    finished: bool
    #: The executor's log, under the worker's work directory.
    stderr: Path


class SparkCluster:
    """A standalone master and ``workers`` workers of ``worker_cores`` cores and
    ``worker_memory`` each (as ``spark-class ... Worker`` takes them: ``1g``).

    ``environment`` is added to the workers' environment, so to every executor's: the S3
    credentials (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``). With a worker memory
    equal to ``spark.executor.memory`` (1g by default) an application gets at most one
    executor per worker, whatever its ``spark.executor.cores``.
    """

    name = "spark-cluster"

    def __init__(self, data_dir: Path, *, workers: int = 2, worker_cores: int = 2,
                 worker_memory: str = "1g",
                 environment: Mapping[str, str] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"a Spark cluster needs at least one worker, not {workers}")
        self.data_dir = data_dir
        self.worker_cores = worker_cores
        self.worker_memory = worker_memory
        self._environment = dict(environment or {})
        self.port, self.webui_port = free_ports(2)
        self._worker_ports: list[tuple[int, int]] = [(0, 0)] * workers
        self._master: ServerProcess | None = None
        self._workers: list[ServerProcess | None] = [None] * workers

    @property
    def url(self) -> str:
        """The master's ``spark://`` URL (a runner's ``CSEP_SPARK_MASTER``)."""
        return f"spark://127.0.0.1:{self.port}"

    @property
    def webui_url(self) -> str:
        return f"http://127.0.0.1:{self.webui_port}"

    def client_env(self) -> dict[str, str]:
        """What a driver on this machine (a runner, a Connect server) adds to its
        environment to use the cluster: the master; ``SPARK_LOCAL_IP`` so that the
        driver listens on 127.0.0.1, where the executors reach it (this machine's name
        may resolve to another address, or to none Spark accepts); and
        ``SPARK_CONF_DIR``, whose ``spark-defaults.conf`` holds
        :meth:`client_defaults`."""
        return {"CSEP_SPARK_MASTER": self.url, "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_CONF_DIR": str(self.data_dir / "client-conf")}

    def client_defaults(self) -> dict[str, str]:
        """Spark properties sized to this cluster, for its drivers: as many shuffle
        partitions and Delta snapshot partitions as the cluster has cores. Spark's
        defaults (200 and 50) suit a large cluster; on this one a sample import's MERGE
        ran about 250 tasks of under a second each, one after another, minutes in all."""
        cores = str(self.worker_cores * len(self._workers))
        return {"spark.sql.shuffle.partitions": cores,
                "spark.databricks.delta.snapshotPartitions": cores}

    def worker_dir(self, index: int) -> Path:
        """The work directory of worker ``index``: its executors' jars and logs."""
        return self.data_dir / f"worker-{index}"

    def start(self, timeout: float = 180.0) -> SparkCluster:
        """Start the master, then the workers; return once the master's JSON shows the
        master and every worker ``ALIVE``. Raises ``TimeoutError`` or ``RuntimeError``
        (with the log's last lines) when a daemon does not get there."""
        for conf in ("conf", "client-conf"):
            (self.data_dir / conf).mkdir(parents=True, exist_ok=True)
        (self.data_dir / "conf" / "log4j2.properties").write_text(LOGGING)
        (self.data_dir / "client-conf" / "spark-defaults.conf").write_text("".join(
            f"{key} {value}\n" for key, value in self.client_defaults().items()))
        try:
            self._master = ServerProcess(
                "spark-master",
                self._spark_class(MASTER_CLASS, "--host", "127.0.0.1",
                                  "--port", str(self.port),
                                  "--webui-port", str(self.webui_port)),
                self.data_dir / "master.log", env=self._env(), cwd=self.data_dir)
            self._master.wait_healthy(lambda: self.state()["status"] == "ALIVE", timeout)
            # All workers start at once (a JVM's start is mostly waiting on a loaded
            # machine), then each is waited for.
            ports = [self._launch_worker(index) for index in range(len(self._workers))]
            for index, port in enumerate(ports):
                self._workers[index].wait_healthy(lambda p=port: self._worker_alive(p),
                                                  timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_worker(self, index: int, timeout: float = 180.0) -> None:
        """Start worker ``index`` (again, after :meth:`kill_worker`) and wait until the
        master lists it ``ALIVE``. Each start takes new ports: the master refuses a worker
        at the address of one it has not yet declared dead."""
        port = self._launch_worker(index)
        self._workers[index].wait_healthy(lambda: self._worker_alive(port), timeout)

    def _launch_worker(self, index: int) -> int:
        port, webui_port = self._worker_ports[index] = tuple(free_ports(2))
        work_dir = self.worker_dir(index)
        work_dir.mkdir(parents=True, exist_ok=True)
        worker = ServerProcess(
            f"spark-worker-{index}",
            self._spark_class(WORKER_CLASS, "--host", "127.0.0.1", "--port", str(port),
                              "--webui-port", str(webui_port),
                              "--cores", str(self.worker_cores),
                              "--memory", self.worker_memory,
                              "--work-dir", str(work_dir), self.url),
            self.data_dir / f"worker-{index}.log",
            env={**self._env(), **self._environment,
                 "SPARK_LOCAL_DIRS": str(self._local_dir(f"worker-{index}"))},
            cwd=work_dir)
        self._workers[index] = worker
        return port

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` and its executors (its process group), as a machine
        lost would; the master notices when its heartbeats stop."""
        worker = self._workers[index]
        if worker is None:
            return
        try:
            os.killpg(worker.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        worker.stop()
        self._workers[index] = None

    def stop(self) -> None:
        """Stop the workers (and their executors), then the master."""
        for index, worker in enumerate(self._workers):
            if worker is not None:
                worker.stop()
                self._workers[index] = None
        if self._master is not None:
            self._master.stop()
            self._master = None

    def running(self) -> bool:
        return self._master is not None and self._master.running()

    def state(self) -> dict:
        """The master's JSON: ``status``, ``workers``, ``activeapps``, ``completedapps``."""
        return _get_json(f"{self.webui_url}/json/")

    def executors(self, app_id: str) -> list[ExecutorOnWorker]:
        """The executors of application ``app_id`` that the live workers list, running or
        finished, with the worker that ran each."""
        found = []
        for worker in self.state()["workers"]:
            if worker["state"] != "ALIVE":
                continue
            index = self._worker_index(worker["port"])
            listing = _get_json(f"{worker['webuiaddress']}/json/")
            for finished, key in ((False, "executors"), (True, "finishedexecutors")):
                for executor in listing[key]:
                    if executor["appid"] == app_id:
                        found.append(ExecutorOnWorker(
                            worker_id=worker["id"], worker_index=index, app_id=app_id,
                            executor_id=int(executor["id"]), finished=finished,
                            stderr=self.worker_dir(index) / app_id / str(executor["id"])
                            / "stderr"))
        return found

    def __enter__(self) -> SparkCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spark_class(self, main_class: str, *args: str) -> list[str]:
        return [str(spark_home() / "bin" / "spark-class"), main_class, *args]

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "SPARK_HOME": str(spark_home()),
               "SPARK_CONF_DIR": str(self.data_dir / "conf"),
               "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_PUBLIC_DNS": "127.0.0.1",
               "SPARK_LOCAL_DIRS": str(self._local_dir("master")),
               "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
               # A worker that stops heartbeating is declared dead after this many
               # seconds (60 by default), and its executors' applications are told.
               "SPARK_MASTER_OPTS": f"-Dspark.worker.timeout={WORKER_TIMEOUT}",
               # Python UDFs on the executors run this interpreter, with this checkout
               # importable, as the runner's own.
               "PYSPARK_PYTHON": sys.executable}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        # A caller's credentials reach the executors only when given as ``environment``.
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                     "CSEP_METASTORE_PASSWORD", "PYSPARK_SUBMIT_ARGS"):
            env.pop(name, None)
        return env

    def _local_dir(self, daemon: str) -> Path:
        """A daemon's scratch directory, made before it starts: two workers making a
        shared one at once raced, and the loser, which caches its local directories,
        failed to launch every executor for the rest of its life."""
        path = self.data_dir / "local" / daemon
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _worker_alive(self, port: int) -> bool:
        return any(w["port"] == port and w["state"] == "ALIVE"
                   for w in self.state()["workers"])

    def _worker_index(self, port: int) -> int:
        return [p for p, _ in self._worker_ports].index(port)


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)
