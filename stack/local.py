"""All servers of the local stack together, as one object for pytest and the CLI."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from runner.spark import TABLE_FORMATS, TOKEN_PATH, SparkSettings
from stack import jars
from stack.cts_double import CTSDouble
from stack.kafka import KafkaBroker
from stack.paths import ROOT
from stack.postgres import Postgres
from stack.seaweed import SeaweedS3
from stack.spark_cluster import SparkCluster
from stack.spark_connect import SparkConnectServer
from stack.supervisor import Supervisor

LAKE_BUCKET = "cdm-lake"
#: The stack's Iceberg warehouses, one per user: S3 table bucket names take lowercase
#: letters, digits and hyphens only, so not the product's default ``user_{user}``.
ICEBERG_WAREHOUSE = "user-{user}"


class LocalStack:
    """Kafka, SeaweedFS S3, PostgreSQL and the CTS double under one temporary directory.

    ``start()`` brings them up (in parallel is not worth it: each takes a few seconds and
    the machine has two cores); ``stop()`` stops them all and removes the data unless
    ``keep_data`` is set. Use as a context manager.

    With ``spark_connect=True`` (or a later :meth:`start_spark_connect`) a Spark Connect
    server joins them, configured for this stack's S3 and metastore; it is opt-in because
    its warm JVM costs a core and ~15 s to start. It runs ``spark_connect_warmup``
    warm-up MERGEs before it serves (none by default: a stack for a demo or a test suite
    would spend longer warming the server than it saves).

    With ``spark_cluster=True`` (or a later :meth:`start_spark_cluster`) a Spark
    standalone cluster (a master and two workers) joins them too, and a Spark Connect
    server started with it uses it as its master.

    ``table_format`` is the Spark Connect server's (and :meth:`connect_runner_env`'s):
    ``delta`` (the metastore's Delta tables) or ``iceberg`` (the users' warehouses in the
    stack's Iceberg REST catalog; the server has no user's catalog, each runner's session
    is given its user's when it opens).
    """

    def __init__(self, base_dir: Path | None = None, keep_data: bool = False,
                 spark_connect: bool = False, spark_connect_warmup: int = 0,
                 spark_cluster: bool = False, table_format: str = "delta") -> None:
        parent = ROOT / ".stack"
        parent.mkdir(exist_ok=True)
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="run-", dir=parent))
        # PostgreSQL runs as its own user when we are root: it must reach its directory.
        for path in (parent, self.base_dir):
            path.chmod(0o755)
        self.keep_data = keep_data
        self.kafka = KafkaBroker(self.base_dir / "kafka")
        self.s3 = SeaweedS3(self.base_dir / "s3")
        self.postgres = Postgres(self.base_dir / "postgres")
        self.cts = CTSDouble()
        self.lake_bucket = LAKE_BUCKET
        self.spark_connect: SparkConnectServer | None = None
        self.spark_connect_supervisor: Supervisor | None = None
        self._with_spark_connect = spark_connect
        self.spark_cluster: SparkCluster | None = None
        self._with_spark_cluster = spark_cluster
        self.spark_connect_warmup = spark_connect_warmup
        if table_format not in TABLE_FORMATS:
            raise ValueError(f"table format {table_format!r}: expected one of "
                             f"{', '.join(TABLE_FORMATS)}")
        self.table_format = table_format
        self._started: list = []

    def start(self) -> LocalStack:
        try:
            for service in (self.postgres, self.s3, self.kafka, self.cts):
                service.start()
                self._started.append(service)
            self.s3.create_bucket(self.lake_bucket)
            if self._with_spark_cluster:
                self.start_spark_cluster()
            if self._with_spark_connect:
                self.start_spark_connect(on_cluster=self._with_spark_cluster)
        except BaseException:
            self.stop()
            raise
        return self

    def start_spark_connect(self, on_cluster: bool = False) -> SparkConnectServer:
        """Start (once) a Spark Connect server on this stack and return it; its master is
        ``local[*]``, or with ``on_cluster`` the stack's Spark cluster (which must be
        started).

        On ``delta``, Delta's Connect plug-ins (jar profile ``spark-connect``, built by
        ``make setup``, or here with Maven when missing) are on, so clients can use
        ``DeltaTable``; a failed build raises ``subprocess.CalledProcessError``. A
        :class:`Supervisor` (:attr:`spark_connect_supervisor`) starts the server again, on
        the same port, whenever its process exits before :meth:`stop`.
        """
        if self.spark_connect is None:
            server = self.spark_connect_server(self.table_format, "spark-connect",
                                               warmup_merges=self.spark_connect_warmup,
                                               on_cluster=on_cluster)
            supervisor = Supervisor(server).start()
            self._started.append(supervisor)
            self.spark_connect, self.spark_connect_supervisor = server, supervisor
        return self.spark_connect

    def spark_connect_server(self, table_format: str, name: str, *, warmup_merges: int = 0,
                             on_cluster: bool = False, **options) -> SparkConnectServer:
        """A Spark Connect server on this stack on ``table_format``, not started (its
        caller starts and stops it), with its data in ``<base_dir>/<name>``; ``options``
        go to :class:`SparkConnectServer` (``memory``, say)."""
        cluster = self.cluster_runner_env() if on_cluster else {}
        env = self.iceberg_runner_env() if table_format == "iceberg" else self.runner_env()
        settings = SparkSettings.from_env({**env, **cluster})
        plugins = () if settings.is_iceberg else _delta_connect_jars()
        server = SparkConnectServer(settings, self.base_dir / name,
                                    delta_connect_jars=plugins, warmup_merges=warmup_merges,
                                    environment=cluster, **options)
        if on_cluster:
            # The server reads its own properties file, not spark-defaults.conf.
            server.conf.update(self.spark_cluster.client_defaults())
        return server

    def start_spark_cluster(self) -> SparkCluster:
        """Start (once) a Spark standalone cluster, a master and two workers of 2 cores
        and 1g each, and return it. Its executors get this stack's S3 credentials."""
        if self.spark_cluster is None:
            cluster = SparkCluster(self.base_dir / "spark-cluster", environment={
                "AWS_ACCESS_KEY_ID": self.s3.access_key,
                "AWS_SECRET_ACCESS_KEY": self.s3.secret_key})
            cluster.start()
            self._started.append(cluster)
            self.spark_cluster = cluster
        return self.spark_cluster

    def stop_spark_cluster(self) -> None:
        """Stop the Spark cluster now, before the rest of the stack (its cores and memory
        go back to the machine)."""
        if self.spark_cluster is not None:
            self._started.remove(self.spark_cluster)
            self.spark_cluster.stop()
            self.spark_cluster = None

    def stop(self) -> None:
        self.spark_connect = self.spark_connect_supervisor = self.spark_cluster = None
        while self._started:
            self._started.pop().stop()
        if not self.keep_data:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def warehouse_dir(self) -> str:
        return f"s3a://{self.lake_bucket}/warehouse"

    def runner_env(self) -> dict[str, str]:
        """The environment a runner (or any Spark/S3 client) needs to use this stack."""
        return {
            "CSEP_S3_ENDPOINT_URL": self.s3.endpoint,
            "CSEP_S3_REGION": self.s3.region,
            "AWS_ACCESS_KEY_ID": self.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
            "CSEP_WAREHOUSE_DIR": self.warehouse_dir,
            "CSEP_METASTORE_URL": self.postgres.jdbc_url,
            "CSEP_METASTORE_USER": self.postgres.user,
            "CSEP_METASTORE_PASSWORD": self.postgres.password,
        }

    def cluster_runner_env(self) -> dict[str, str]:
        """The environment of a classic runner whose Spark runs on the stack's cluster."""
        if self.spark_cluster is None:
            raise RuntimeError("the stack has no Spark cluster: start_spark_cluster()")
        return {**self.runner_env(), **self.spark_cluster.client_env()}

    def connect_runner_env(self) -> dict[str, str]:
        """The environment of a runner that uses the stack's Spark Connect server."""
        if self.spark_connect is None:
            raise RuntimeError("the stack has no Spark Connect server: start_spark_connect()")
        env = self.iceberg_runner_env() if self.table_format == "iceberg" else (
            self.runner_env())
        return {**env, "CSEP_SPARK_MASTER": self.spark_connect.url}

    def create_iceberg_catalog(self, user: str) -> str:
        """Provision ``user``'s Iceberg warehouse (an S3 table bucket), as an operator
        would before the user's first job; return its name."""
        name = ICEBERG_WAREHOUSE.replace("{user}", user)
        self.s3.create_table_bucket(name)
        return name

    def iceberg_catalog(self, user: str):
        """A pyiceberg catalog on ``user``'s warehouse, through the stack's REST catalog
        with the runners' credential: an independent reader of what Spark wrote."""
        from pyiceberg.catalog import load_catalog

        return load_catalog(
            f"witness-{user}", type="rest", uri=self.s3.iceberg_url,
            credential=self.s3.iceberg_credential,
            warehouse=ICEBERG_WAREHOUSE.replace("{user}", user),
            **{"oauth2-server-uri": self.s3.iceberg_url + TOKEN_PATH,
               "s3.endpoint": self.s3.endpoint, "s3.region": self.s3.region,
               "s3.access-key-id": self.s3.access_key,
               "s3.secret-access-key": self.s3.secret_key, "s3.path-style-access": "true"})

    def delta_storage_options(self) -> dict[str, str]:
        """This stack's S3 as delta-rs storage options: an independent reader of the Delta
        tables Spark wrote (``deltalake.DeltaTable(uri, storage_options=...)``)."""
        return {"AWS_ENDPOINT_URL": self.s3.endpoint, "AWS_REGION": self.s3.region,
                "AWS_ACCESS_KEY_ID": self.s3.access_key,
                "AWS_SECRET_ACCESS_KEY": self.s3.secret_key, "AWS_ALLOW_HTTP": "true"}

    def delta_rows(self, path: str) -> list[dict]:
        """The rows of the Delta table at ``<warehouse>/<path>`` (e.g. ``db.db/table``),
        read by delta-rs without Spark or the metastore."""
        from deltalake import DeltaTable

        table = DeltaTable(f"s3://{self.lake_bucket}/warehouse/{path}",
                           storage_options=self.delta_storage_options())
        return table.to_pyarrow_table().to_pylist()

    def iceberg_runner_env(self) -> dict[str, str]:
        """The environment of a runner on the ``iceberg`` table format: this stack's S3
        and its Iceberg REST catalog (SeaweedFS's), with the catalog's OAuth2 client
        credentials. Users' warehouses come from :meth:`create_iceberg_catalog`."""
        return {
            "CSEP_S3_ENDPOINT_URL": self.s3.endpoint,
            "CSEP_S3_REGION": self.s3.region,
            "AWS_ACCESS_KEY_ID": self.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
            "CSEP_TABLE_FORMAT": "iceberg",
            "CSEP_ICEBERG_CATALOG_URL": self.s3.iceberg_url,
            "CSEP_ICEBERG_CREDENTIAL": self.s3.iceberg_credential,
            "CSEP_ICEBERG_WAREHOUSE": ICEBERG_WAREHOUSE,
        }

    def endpoints(self) -> dict[str, str]:
        """Human-facing addresses (no secrets)."""
        endpoints = {
            "kafka": self.kafka.bootstrap,
            "s3": self.s3.endpoint,
            "iceberg rest catalog": self.s3.iceberg_url,
            "postgres (metastore)": self.postgres.jdbc_url,
            "cts double": self.cts.url,
        }
        if self.spark_cluster:
            endpoints["spark master"] = self.spark_cluster.url
            endpoints["spark master ui"] = self.spark_cluster.webui_url
        if self.spark_connect:
            endpoints["spark connect"] = self.spark_connect.url
        endpoints["data"] = str(self.base_dir)
        return endpoints

    def secrets(self) -> list[str]:
        """Every credential of the stack, for scanning files that must not contain them."""
        return [self.s3.secret_key, self.postgres.password, self.cts.token]


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    """``os.environ`` plus ``extra``, with this checkout importable."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _delta_connect_jars() -> tuple[str, ...]:
    directory = jars.ensure("spark-connect")
    return tuple(sorted(str(p) for p in directory.glob("*.jar")))
