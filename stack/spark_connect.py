"""A Spark Connect server: one warm Spark driver that runners reach at an ``sc://`` URL.

A classic Spark session costs a cold JVM per runner (14-16 s here); a Connect client is a
thin gRPC client (its session starts in well under a second), so with a warm server one
runner per event stays cheap.

The server is pyspark's own distribution: ``spark-submit`` of :mod:`stack.connect_driver`,
a driver that serves Spark Connect (whose jar ships in the pyspark wheel) on its Spark
session (it says why it is not Spark's ``SparkConnectServer`` main class), configured
with Delta, S3A and the metastore by
:meth:`runner.spark.SparkSettings.spark_conf`, the same configuration a classic runner
uses, so tables written through either are the same tables. With the Delta Connect
plug-in jars (profile ``spark-connect`` of ``jvm/pom.xml``, compiled from Delta's sources
in ``jvm/delta-connect``) Delta's own Python API (``DeltaTable``) also works over Connect;
without them Delta works through SQL and the DataFrame reader/writer only.

    python -m stack.spark_connect [--host 0.0.0.0] [--port 15002] [--delta-connect-jars DIR]

reads the ``CSEP_*`` environment of ``runner/spark.py`` (``CSEP_SPARK_MASTER`` is then the
server's own master: ``local[*]`` or ``spark://...``) and serves until SIGTERM, starting
the server again on the same port if its JVM exits.

With ``CSEP_TABLE_FORMAT=iceberg`` the server has Iceberg's runtime (``CSEP_ICEBERG_JARS``)
and SQL extensions, and no Delta, no metastore and no catalog of any user: each runner's
session is given its job user's catalog (as ``my`` and ``<user>``) and the catalog
credential when it opens (:meth:`runner.spark.SparkSettings.session_conf`), over its own
gRPC connection. The server itself needs no catalog credential, only the S3 keys Iceberg's
S3FileIO reads data files with; ``spark.redaction.regex`` covers the credential in what
the server shows of a session's settings.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

import attrs

from runner.spark import SparkSettings
from stack.connect_driver import WARMUP_FORMAT, WARMUP_MERGES
from stack.process import ServerProcess, free_ports, port_open
from stack.supervisor import Supervisor

DRIVER = Path(__file__).resolve().parent / "connect_driver.py"
DELTA_PLUGINS = {
    "spark.connect.extensions.relation.classes":
        "org.apache.spark.sql.connect.delta.DeltaRelationPlugin",
    "spark.connect.extensions.command.classes":
        "org.apache.spark.sql.connect.delta.DeltaCommandPlugin",
}

#: Spark keeps the classes it compiles for queries in a cache of this many (a static
#: setting, 100 by default). A sample import uses about 65, and Delta's checkpoint every
#: tenth commit more: with 100, imports one after another evicted each other's classes
#: and some compiled 7 to 19 again (about 10 ms each); with 1000, 2 or 3. Several
#: importers' tables and schemas need room for more.
CODEGEN_CACHE_ENTRIES = "spark.sql.codegen.cache.maxEntries"
CODEGEN_CACHE_SIZE = 1000
#: The server's JVM heap, where its local executors run too. With Spark's default of 1g
#: a warm server spent about 0.15 s of every sample import collecting garbage (young and
#: concurrent cycles), and its first imports were slower still; with 4g, a third of that.
DEFAULT_MEMORY = "4g"
#: MERGEs the server runs into a scratch table before it serves (stack/connect_driver.py).
#: A server just started took 2-4 s of CPU per sample import against 1.5 s for one that
#: had served a few dozen; 30 rounds take about a minute of the server's start, and its
#: first imports then run at nearly its steady speed. A server started only for one
#: import or a test suite (:class:`stack.local.LocalStack`) is better off without.
DEFAULT_WARMUP_MERGES = 30
#: Seconds the health check allows per warm-up MERGE, on top of the JVM's start.
WARMUP_SECONDS_EACH = 6.0
#: Every Connect session on the server's own class loaders, so that code compiled for
#: one session serves the next (see stack/connect_driver.py).
SHARED_CLASS_LOADERS = {
    "spark.sql.artifact.isolation.enabled": "false",
    "spark.sql.artifact.isolation.alwaysApplyClassloader": "false",
}

#: A Spark JVM's log4j2 configuration: warnings and errors, timestamped, on stderr (which
#: the process's owner writes to its log file); Spark's default, INFO for everything, is
#: thousands of lines per import. Each use adds the loggers it wants at INFO.
STDERR_WARNINGS = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{yyyy-MM-dd HH:mm:ss.SSS} %p %c{1}: %m%n%ex
"""

#: The server's log (its stderr, in ``spark-connect.log``): the warnings, plus the
#: driver's start line, the server's sessions and the classes it compiles.
LOGGING = STDERR_WARNINGS + """\
logger.sessions.name = org.apache.spark.sql.connect.service.SparkConnectSessionManager
logger.sessions.level = info
# Each class compiled for a query ("Code generated in ... ms"): 2 or 3 per sample import
# on a warm server, where sessions share generated code (see connect_driver.py).
logger.codegen.name = org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator
logger.codegen.level = info
# Warnings repeated on every request that say nothing about it: Hive's conf lacks a key
# Spark sets, and Delta's MERGE unpersists the source it checkpointed.
logger.hiveconf.name = org.apache.hadoop.hive.conf.HiveConf
logger.hiveconf.level = error
logger.rdd.name = org.apache.spark.rdd.MapPartitionsRDD
logger.rdd.level = error
"""


#: Spark's event log, off on a server on ``iceberg``: each job's event carries the
#: ``spark.*`` settings of the session that ran it (Spark copies them into the job's
#: properties), the session's catalog credential among them, and the event log redacts
#: only the properties that are in the server's own configuration, which a user's
#: catalog is not (``EventLoggingListener.redactProperties``, Spark 4.0).
EVENT_LOG = "spark.eventLog.enabled"


def spark_home() -> Path:
    """pyspark's own Spark distribution (``bin/spark-submit``, ``jars/``)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def server_conf(settings: SparkSettings, host: str, port: int,
                delta_connect_jars: tuple[str, ...] = (), *,
                memory: str = DEFAULT_MEMORY, warmup_merges: int = 0) -> dict[str, str]:
    """The server's Spark properties: the runner's classic configuration plus the gRPC
    binding, the heap (``memory``, as ``spark.driver.memory`` takes it: ``4g``), the
    number of warm-up MERGEs before it serves, and the Delta Connect plug-ins when their
    jars are given.

    On ``iceberg``: Iceberg's runtime and extensions, the redaction of the catalog
    credential, and no catalog of any user (a session is given its user's when it opens:
    :meth:`runner.spark.SparkSettings.session_conf`); Delta's plug-ins are refused."""
    if warmup_merges < 0:
        raise ValueError(f"warm-up MERGEs must be 0 or more, not {warmup_merges}")
    if settings.is_connect:
        raise ValueError("a Spark Connect server needs a classic master (local[*] or "
                         f"spark://...), not {settings.master}")
    if settings.is_iceberg and delta_connect_jars:
        raise ValueError("Delta's Connect plug-ins serve Delta tables: a server on the "
                         "iceberg table format takes none")
    with_plugins = attrs.evolve(settings, jars=settings.jars + tuple(delta_connect_jars))
    conf = with_plugins.spark_conf()
    conf["spark.app.name"] = "cdm-spark-events-connect"
    conf["spark.master"] = settings.master
    conf["spark.connect.grpc.binding.address"] = host
    conf["spark.connect.grpc.binding.port"] = str(port)
    conf[CODEGEN_CACHE_ENTRIES] = str(CODEGEN_CACHE_SIZE)
    conf.update(SHARED_CLASS_LOADERS)
    conf["spark.driver.memory"] = memory
    conf[WARMUP_MERGES] = str(warmup_merges)
    conf[WARMUP_FORMAT] = settings.table_format
    if settings.is_iceberg:
        conf[EVENT_LOG] = "false"
    if delta_connect_jars:
        conf.update(DELTA_PLUGINS)
    return conf


class SparkConnectServer:
    """One Spark Connect server process, health-checked on its gRPC port.

    The configuration goes to a 0600 properties file rather than the command line; it
    holds no credential either: those reach the server's JVM through its environment
    (:meth:`runner.spark.SparkSettings.jvm_environment`), as they reach a runner's.
    ``environment`` is added to the server's (``SPARK_LOCAL_IP``, say, for the address
    a cluster's executors reach the driver at). ``start()`` may be called again after
    ``stop()`` (or after the process died): the
    server comes back on the same port, which is what :class:`stack.supervisor.Supervisor`
    does when the process exits. With ``warmup_merges`` the port opens (and ``start()``
    returns) only after that many warm-up MERGEs, on every start.
    """

    name = "spark-connect"

    def __init__(self, settings: SparkSettings, data_dir: Path, *, host: str = "127.0.0.1",
                 port: int | None = None, delta_connect_jars: tuple[str, ...] = (),
                 memory: str = DEFAULT_MEMORY, warmup_merges: int = 0,
                 environment: Mapping[str, str] | None = None) -> None:
        self.host = host
        self.port = port or free_ports(1)[0]
        self.data_dir = data_dir
        self.warmup_merges = warmup_merges
        self.conf = server_conf(settings, host, self.port, delta_connect_jars,
                                memory=memory, warmup_merges=warmup_merges)
        self._credentials = settings.jvm_environment()
        self._environment = dict(environment or {})
        self.delta_plugins = bool(delta_connect_jars)
        self.table_format = settings.table_format
        self._server: ServerProcess | None = None

    @property
    def url(self) -> str:
        """The ``sc://`` URL clients use (``CSEP_SPARK_MASTER`` of a Connect runner)."""
        return f"sc://{self.host}:{self.port}"

    def start(self, timeout: float | None = None) -> SparkConnectServer:
        """Start the server and wait until its port opens (by default for 240 s plus
        :data:`WARMUP_SECONDS_EACH` per warm-up MERGE)."""
        if self.table_format == "iceberg" and self.conf.get(EVENT_LOG) == "true":
            raise ValueError(f"{EVENT_LOG}=true on a server on the iceberg table format: "
                             "its event log would hold each session's catalog credential "
                             "unredacted (see stack.spark_connect.EVENT_LOG)")
        if timeout is None:
            timeout = 240.0 + WARMUP_SECONDS_EACH * self.warmup_merges
        self.data_dir.mkdir(parents=True, exist_ok=True)
        properties = self.data_dir / "spark-connect.conf"
        properties.touch(mode=0o600)
        properties.chmod(0o600)
        properties.write_text("".join(f"{k} {_escape(v)}\n" for k, v in self.conf.items()))
        # SPARK_CONF_DIR is data_dir: Spark's logging reads its log4j2.properties there.
        (self.data_dir / "log4j2.properties").write_text(LOGGING)
        home = spark_home()
        env = {**os.environ, **self._environment, **self._credentials,
               "SPARK_HOME": str(home)}
        # A caller's PYSPARK_SUBMIT_ARGS or SPARK_CONF_DIR would silently change the server.
        env.pop("PYSPARK_SUBMIT_ARGS", None)
        env["SPARK_CONF_DIR"] = str(self.data_dir)
        # The driver, and any Python worker a session's UDF needs, run this interpreter.
        env["PYSPARK_DRIVER_PYTHON"] = env["PYSPARK_PYTHON"] = sys.executable
        self._server = ServerProcess(
            "spark-connect",
            [str(home / "bin" / "spark-submit"), "--properties-file", str(properties),
             "--name", self.conf["spark.app.name"], str(DRIVER)],
            self.data_dir / "spark-connect.log", env=env, cwd=self.data_dir)
        self._server.wait_healthy(lambda: port_open(self.port, _probe_host(self.host)),
                                  timeout)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()
            self._server = None

    def running(self) -> bool:
        """True while the server process started last has not exited."""
        return self._server is not None and self._server.running()

    @property
    def pid(self) -> int | None:
        return self._server.proc.pid if self._server else None

    def log_tail(self, lines: int = 30) -> str:
        return self._server.log_tail(lines) if self._server else ""

    def __enter__(self) -> SparkConnectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _escape(value: str) -> str:
    # Java properties: a backslash escapes, so keep Windows-free paths and URLs literal.
    return value.replace("\\", "\\\\")


def warmup_count(text: str | int) -> int:
    """A number of warm-up MERGEs from the command line or the environment: 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of MERGEs: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.spark_connect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=15002)
    parser.add_argument("--delta-connect-jars", type=Path,
                        default=os.environ.get("CSEP_DELTA_CONNECT_JARS") or None,
                        help="directory of the Delta Connect plug-in jars "
                             "(default $CSEP_DELTA_CONNECT_JARS; none: no DeltaTable API)")
    parser.add_argument("--data-dir", type=Path, default=Path.cwd() / "spark-connect")
    parser.add_argument("--memory", default=os.environ.get("CSEP_SPARK_CONNECT_MEMORY")
                        or DEFAULT_MEMORY,
                        help="the server's JVM heap, e.g. 4g (default "
                             f"$CSEP_SPARK_CONNECT_MEMORY or {DEFAULT_MEMORY})")
    parser.add_argument("--warmup-merges", type=warmup_count,
                        default=os.environ.get("CSEP_SPARK_CONNECT_WARMUP")
                        or DEFAULT_WARMUP_MERGES,
                        help="small MERGEs into a scratch table before serving, so that "
                             "the first imports run at a warm server's speed (default "
                             f"$CSEP_SPARK_CONNECT_WARMUP or {DEFAULT_WARMUP_MERGES}; "
                             "0: none)")
    args = parser.parse_args(argv)
    settings = SparkSettings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plugins = tuple(sorted(str(p) for p in args.delta_connect_jars.glob("*.jar"))) if (
        args.delta_connect_jars) else ()
    if plugins and settings.is_iceberg:
        logging.info("CSEP_TABLE_FORMAT=iceberg: Delta's Connect plug-ins are not loaded")
        plugins = ()
    server = SparkConnectServer(settings, args.data_dir, host=args.host,
                                port=args.port, delta_connect_jars=plugins,
                                memory=args.memory, warmup_merges=args.warmup_merges)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Supervisor(server):
        print(f"Spark Connect serving at {server.url} (table format "
              f"{settings.table_format}; Delta plug-ins: "
              f"{'on' if server.delta_plugins else 'off'})", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
