"""The Spark session factory handed to importers as ``get_spark(*, executor_cores=1)``.

Everything comes from the environment, so the same code runs in a process, in the runner
container and against a cluster; credentials never pass through a job spec:

==========================  ========================================================
``CSEP_SPARK_MASTER``       ``local[*]`` (default), ``spark://host:7077``,
                            ``k8s://https://api:6443`` or Spark Connect ``sc://host:15002``
``CSEP_SPARK_JARS``         a directory of jars, or a comma-separated list of jars, added
                            as ``spark.jars`` (Delta, hadoop-aws + AWS SDK, JDBC driver);
                            default ``.cache/jars/spark`` of this checkout
``CSEP_S3_ENDPOINT_URL``    the S3 endpoint, e.g. ``http://127.0.0.1:8333`` (path style)
``CSEP_S3_REGION``          default ``us-east-1``
``AWS_ACCESS_KEY_ID``       S3 credentials
``AWS_SECRET_ACCESS_KEY``
``CSEP_WAREHOUSE_DIR``      where managed tables live, e.g. ``s3a://cdm-lake/warehouse``
``CSEP_METASTORE_URL``      ``jdbc:postgresql://...`` (Spark's built-in Hive client on a
                            database), ``thrift://...`` (a Hive metastore service), or
                            empty for an embedded Derby metastore (one process at a time)
``CSEP_METASTORE_USER``     database user and password for a ``jdbc:`` metastore
``CSEP_METASTORE_PASSWORD``
``CSEP_TABLE_FORMAT``       ``delta`` (default: Delta tables in the metastore above) or
                            ``iceberg`` (Iceberg tables in a REST catalog, below)
``CSEP_ICEBERG_JARS``       the Iceberg Spark runtime (a directory or a list, as
                            ``CSEP_SPARK_JARS``), added with ``iceberg``; default
                            ``.cache/jars/iceberg`` of this checkout
``CSEP_ICEBERG_CATALOG_URL`` the REST catalog's base URI (the ``uri`` catalog property)
``CSEP_ICEBERG_CREDENTIAL`` OAuth2 client credentials, ``client_id:client_secret``
``CSEP_ICEBERG_WAREHOUSE``  the job user's warehouse, a template: default ``user_{user}``
``CSEP_ICEBERG_SCOPE``      the OAuth2 scope asked for; default ``PRINCIPAL_ROLE:ALL``
                            (Polaris's); empty asks for none
==========================  ========================================================

With ``iceberg`` a classic session has no Delta and no Hive settings: it has Iceberg's SQL
extensions and the job user's catalog twice, as ``my`` (the default catalog) and as
``<user>``. The catalog credential is set on the session after the JVM has started
(``spark.conf.set``, over the driver's local socket), never in the configuration the JVM
is started with; ``spark.redaction.regex`` covers it in the UI and the event log. Data
files are read and written by Iceberg's S3FileIO with the AWS variables above.

No credential goes into the Spark configuration, which pyspark and ``spark-submit`` put
on the JVM's command line (readable by every local user in ``/proc/*/cmdline``): S3A reads
the AWS variables through the SDK's environment credentials provider, and the metastore
password is an ``${env.CSEP_METASTORE_PASSWORD}`` reference that Hadoop's configuration
expands inside the JVM. The JVM is given these variables in its environment
(:meth:`SparkSettings.jvm_environment`).

With an ``sc://`` master the session is a Spark Connect client: S3, Delta and the
metastore are configured on the server, and only the URL is used here. Each runner gets a
session of its own on the server (its own session configuration and temporary views);
a server that does not answer within :data:`CONNECT_TIMEOUT` raises
:class:`SparkUnavailable` instead of leaving the runner waiting. With ``iceberg`` the
server has Iceberg's runtime and extensions but no user's catalog
(:meth:`SparkSettings.spark_conf` without a user): the runner sets the job user's catalog
on its own session when it opens it (:meth:`SparkSettings.session_conf`, over the gRPC
connection), credential included. A Connect session is a Spark session of its own on the
server, with its own configuration and catalogs: another runner's session, of another
user, cannot name this one's catalogs.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from common.net import connection_error

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_DEFAULT_JARS = Path(__file__).resolve().parent.parent / ".cache" / "jars" / "spark"
_DEFAULT_ICEBERG_JARS = _DEFAULT_JARS.parent / "iceberg"

TABLE_FORMATS = ("delta", "iceberg")
#: The names the job user's Iceberg catalog has in a session, besides the user's own.
DEFAULT_CATALOG = "my"
DEFAULT_WAREHOUSE = "user_{user}"
DEFAULT_SCOPE = "PRINCIPAL_ROLE:ALL"
#: Where the Iceberg REST specification puts the OAuth2 token endpoint, under the
#: catalog's URI (Polaris's and SeaweedFS's catalogs serve it there).
TOKEN_PATH = "/v1/oauth/tokens"
#: Spark's default redaction (``(?i)secret|password|token|access[.]key``) and the Iceberg
#: catalog's ``credential`` property.
REDACTION_REGEX = r"(?i)secret|password|token|access[.]key|credential"
ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"

#: AWS SDK v2's provider of ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and
#: ``AWS_SESSION_TOKEN``); hadoop-aws 3.4 takes SDK v2 providers as they are.
ENV_CREDENTIALS_PROVIDER = (
    "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider")
METASTORE_PASSWORD_VARIABLE = "CSEP_METASTORE_PASSWORD"

# Seconds a Connect runner waits for its server to accept a connection: long enough for
# a server being restarted by its supervisor, short next to an import.
CONNECT_TIMEOUT = 30.0
# Retries of a Connect request after the session is up. pyspark's default (15 retries,
# backoff to 60 s) waits about 10 minutes for a server that died; this waits seconds.
_CONNECT_RETRIES: dict[str, Any] = {"max_retries": 5, "initial_backoff": 100,
                                    "backoff_multiplier": 4.0, "max_backoff": 5000}


class SparkUnavailable(ConnectionError):
    """The Spark Connect server at :attr:`url` did not accept a connection in time.

    :attr:`url` is ``sc://host:port`` without the URL's parameters (a token stays out of
    messages and logs).
    """

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        super().__init__(f"Spark Connect server {url} unreachable: no connection within "
                         f"{timeout:g}s")


@attrs.frozen
class SparkSettings:
    """Where Spark runs and what it talks to. Build with :meth:`from_env`."""

    master: str = "local[*]"
    jars: tuple[str, ...] = ()
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: str | None = attrs.field(default=None, repr=False)
    s3_secret_key: str | None = attrs.field(default=None, repr=False)
    warehouse_dir: str | None = None
    metastore_url: str | None = None
    metastore_user: str | None = None
    metastore_password: str | None = attrs.field(default=None, repr=False)
    table_format: str = attrs.field(default="delta",
                                    validator=attrs.validators.in_(TABLE_FORMATS))
    iceberg_catalog_url: str | None = None
    iceberg_credential: str | None = attrs.field(default=None, repr=False)
    iceberg_warehouse: str = DEFAULT_WAREHOUSE
    iceberg_scope: str | None = DEFAULT_SCOPE
    #: A ``file://`` directory URI: the job user's catalog is a Hadoop catalog there (no
    #: server, no credential) instead of the REST catalog. The sandbox's; not read from
    #: the environment.
    iceberg_local_warehouse: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SparkSettings:
        """Read the ``CSEP_*``/``AWS_*`` variables above; unset ones take their defaults.

        Raises ``ValueError`` naming the variable for an unknown ``CSEP_TABLE_FORMAT`` or
        a warehouse template without ``{user}``."""
        table_format = (environ.get("CSEP_TABLE_FORMAT") or "delta").strip().lower()
        if table_format not in TABLE_FORMATS:
            raise ValueError(f"CSEP_TABLE_FORMAT={table_format!r}: expected one of "
                             f"{', '.join(TABLE_FORMATS)}")
        warehouse = environ.get("CSEP_ICEBERG_WAREHOUSE") or DEFAULT_WAREHOUSE
        if "{user}" not in warehouse:
            raise ValueError(f"CSEP_ICEBERG_WAREHOUSE={warehouse!r}: the template must "
                             f"contain {{user}} (one warehouse per user)")
        master = environ.get("CSEP_SPARK_MASTER") or "local[*]"
        jars = _jar_list(environ.get("CSEP_SPARK_JARS") or str(_DEFAULT_JARS))
        if table_format == "iceberg":
            jars += _jar_list(environ.get("CSEP_ICEBERG_JARS") or str(_DEFAULT_ICEBERG_JARS))
        return cls(
            master=master,
            jars=jars,
            s3_endpoint_url=environ.get("CSEP_S3_ENDPOINT_URL") or None,
            s3_region=environ.get("CSEP_S3_REGION") or "us-east-1",
            s3_access_key=environ.get("AWS_ACCESS_KEY_ID") or None,
            s3_secret_key=environ.get("AWS_SECRET_ACCESS_KEY") or None,
            warehouse_dir=environ.get("CSEP_WAREHOUSE_DIR") or None,
            metastore_url=environ.get("CSEP_METASTORE_URL") or None,
            metastore_user=environ.get("CSEP_METASTORE_USER") or None,
            metastore_password=environ.get("CSEP_METASTORE_PASSWORD") or None,
            table_format=table_format,
            iceberg_catalog_url=environ.get("CSEP_ICEBERG_CATALOG_URL") or None,
            iceberg_credential=environ.get("CSEP_ICEBERG_CREDENTIAL") or None,
            iceberg_warehouse=warehouse,
            iceberg_scope=environ.get("CSEP_ICEBERG_SCOPE", DEFAULT_SCOPE) or None,
        )

    @property
    def is_iceberg(self) -> bool:
        return self.table_format == "iceberg"

    def warehouse(self, user: str) -> str:
        """The Iceberg warehouse of ``user`` (the template filled in)."""
        return self.iceberg_warehouse.replace("{user}", user)

    def catalog_conf(self, user: str) -> dict[str, str]:
        """The Iceberg catalog of ``user``, without its credential, named ``my`` and
        ``<user>``: ``spark.sql.catalog.<name>.*`` settings."""
        if self.iceberg_local_warehouse:
            return self._named(user, {"": "org.apache.iceberg.spark.SparkCatalog",
                                      "type": "hadoop",
                                      "warehouse": self.iceberg_local_warehouse})
        if not self.iceberg_catalog_url:
            raise ValueError("CSEP_TABLE_FORMAT=iceberg needs CSEP_ICEBERG_CATALOG_URL")
        properties = {
            "": "org.apache.iceberg.spark.SparkCatalog",
            "type": "rest",
            "uri": self.iceberg_catalog_url,
            "warehouse": self.warehouse(user),
            "oauth2-server-uri": self.iceberg_catalog_url.rstrip("/") + TOKEN_PATH,
            "token-refresh-enabled": "true",
            "io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
            "client.region": self.s3_region,
            "s3.path-style-access": "true",
        }
        if self.iceberg_scope:
            properties["scope"] = self.iceberg_scope
        if self.s3_endpoint_url:
            properties["s3.endpoint"] = self.s3_endpoint_url
        return self._named(user, properties)

    @staticmethod
    def _named(user: str, properties: Mapping[str, str]) -> dict[str, str]:
        """The catalog ``properties`` (``""`` the implementation) under both names."""
        conf = {}
        for name in (DEFAULT_CATALOG, user):
            for key, value in properties.items():
                conf[f"spark.sql.catalog.{name}" + (f".{key}" if key else "")] = value
        return conf

    def catalog_secrets(self, user: str) -> dict[str, str]:
        """The catalog settings that hold the credential: set on a running session only
        (:func:`spark_factory`), never in the configuration a JVM starts with."""
        if not self.iceberg_credential:
            return {}
        return {f"spark.sql.catalog.{name}.credential": self.iceberg_credential
                for name in (DEFAULT_CATALOG, user)}

    def session_conf(self, user: str) -> dict[str, str]:
        """What a session on a server without user catalogs (a Spark Connect server on
        ``iceberg``) is given at its start to become ``user``'s: the catalog under both
        names, its credential, and ``my`` as the default catalog. Secrets included: set
        with ``spark.conf.set`` on the session, never in a server's configuration."""
        return {**self.catalog_conf(user), **self.catalog_secrets(user),
                "spark.sql.defaultCatalog": DEFAULT_CATALOG}

    @property
    def is_connect(self) -> bool:
        return self.master.startswith("sc://")

    def spark_conf(self, executor_cores: int = 1, user: str | None = None) -> dict[str, str]:
        """The classic-session configuration: Delta, S3A, the metastore, the jars; with
        ``iceberg``, Iceberg and ``user``'s catalog (without its credential) instead of
        Delta and the metastore.

        With ``iceberg`` and no ``user``, a Spark Connect server's: Iceberg's runtime and
        extensions and no catalog of any user (each session gets its user's,
        :meth:`session_conf`), so that no session sees a catalog it was not given."""
        conf = {
            "spark.app.name": "cdm-spark-events-runner",
            "spark.executor.cores": str(executor_cores),
            "spark.redaction.regex": REDACTION_REGEX,
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.endpoint.region": self.s3_region,
        }
        if self.master.startswith("local"):
            conf["spark.driver.host"] = "127.0.0.1"
            conf["spark.driver.bindAddress"] = "127.0.0.1"
            # A handful of rows per import: 200 shuffle partitions would be 200 tasks.
            conf["spark.sql.shuffle.partitions"] = "8"
        if self.master.startswith("local") and not self.is_iceberg:
            # Delta rebuilds a table's state after each commit in this many tasks (50 by
            # default): on one machine that is seconds of task overhead per MERGE of a
            # small table, for no parallelism beyond the machine's cores.
            conf["spark.databricks.delta.snapshotPartitions"] = str(
                local_cores(self.master))
        if self.jars:
            conf["spark.jars"] = ",".join(self.jars)
            drivers = [jar for jar in self.jars if is_jdbc_driver(jar)]
            if drivers:
                # The Hive client loads the JDBC driver through the driver's system
                # classpath. Only the drivers go there: a jar placed before Spark's own
                # can shadow its classes (the AWS SDK bundle carries an old SLF4J API,
                # which silences all of Spark's logging).
                conf["spark.driver.extraClassPath"] = ":".join(drivers)
        if self.s3_endpoint_url:
            conf["spark.hadoop.fs.s3a.endpoint"] = self.s3_endpoint_url
            conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
                self.s3_endpoint_url.startswith("https")).lower()
        if self.s3_access_key and self.s3_secret_key:
            # The keys stay in the environment (see jvm_environment): a value set here
            # would reach the JVM's command line, which every local user can read.
            conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = ENV_CREDENTIALS_PROVIDER
        if self.is_iceberg:
            conf["spark.sql.extensions"] = ICEBERG_EXTENSIONS
            if user is not None:
                conf.update(self.catalog_conf(user))
                conf["spark.sql.defaultCatalog"] = DEFAULT_CATALOG
            return conf
        conf["spark.sql.extensions"] = "io.delta.sql.DeltaSparkSessionExtension"
        conf["spark.sql.catalog.spark_catalog"] = (
            "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        if self.warehouse_dir:
            conf["spark.sql.warehouse.dir"] = self.warehouse_dir
        if self.metastore_url:
            conf["spark.sql.catalogImplementation"] = "hive"
            if self.metastore_url.startswith("thrift://"):
                conf["spark.hadoop.hive.metastore.uris"] = self.metastore_url
            else:
                conf.update({
                    "spark.hadoop.javax.jdo.option.ConnectionURL": self.metastore_url,
                    "spark.hadoop.javax.jdo.option.ConnectionDriverName": _jdbc_driver(
                        self.metastore_url),
                    # Create the metastore schema on first use, without foreign keys:
                    # DataNucleus adds them from a second connection while its first holds
                    # a lock on the referenced table, which deadlocks on PostgreSQL.
                    "spark.hadoop.datanucleus.schema.autoCreateTables": "true",
                    "spark.hadoop.datanucleus.schema.autoCreateColumns": "true",
                    "spark.hadoop.datanucleus.schema.autoCreateConstraints": "false",
                    "spark.hadoop.hive.metastore.schema.verification": "false",
                })
                if self.metastore_user:
                    conf["spark.hadoop.javax.jdo.option.ConnectionUserName"] = self.metastore_user
                if self.metastore_password:
                    # Hadoop's Configuration expands ${env.NAME} when Hive reads the
                    # password: the JVM's command line carries the variable's name only.
                    conf["spark.hadoop.javax.jdo.option.ConnectionPassword"] = (
                        f"${{env.{METASTORE_PASSWORD_VARIABLE}}}")
        return conf

    def jvm_environment(self) -> dict[str, str]:
        """The environment variables a classic Spark JVM (a runner's, a Connect server's)
        needs for the credentials :meth:`spark_conf` refers to but does not contain."""
        env = {}
        if self.s3_access_key and self.s3_secret_key:
            env["AWS_ACCESS_KEY_ID"] = self.s3_access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.s3_secret_key
        if self.metastore_url and not self.metastore_url.startswith("thrift://") and (
                self.metastore_password):
            env[METASTORE_PASSWORD_VARIABLE] = self.metastore_password
        return env


def local_cores(master: str) -> int:
    """The cores of a ``local``, ``local[N]``, ``local[*]`` or ``local[N,F]`` master."""
    found = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\d+)?\])?", master)
    if found is None:
        raise ValueError(f"{master!r} is not a local master")
    count = found.group(1)
    if count is None:
        return 1
    if count == "*":
        return os.cpu_count() or 1
    return max(1, int(count))


def is_jdbc_driver(jar: str) -> bool:
    """True when ``jar`` registers a ``java.sql.Driver`` (a JDBC driver). A jar that is
    missing or not a zip is not one."""
    try:
        with zipfile.ZipFile(jar) as archive:
            archive.getinfo("META-INF/services/java.sql.Driver")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False
    return True


def _jar_list(value: str) -> tuple[str, ...]:
    if "," not in value and Path(value).is_dir():
        return tuple(sorted(str(p) for p in Path(value).glob("*.jar")))
    return tuple(part for part in (p.strip() for p in value.split(",")) if part)


def _jdbc_driver(url: str) -> str:
    drivers = {"jdbc:postgresql:": "org.postgresql.Driver",
               "jdbc:derby:": "org.apache.derby.jdbc.EmbeddedDriver",
               "jdbc:mysql:": "com.mysql.cj.jdbc.Driver"}
    for prefix, driver in drivers.items():
        if url.startswith(prefix):
            return driver
    raise ValueError(f"CSEP_METASTORE_URL: no known JDBC driver for {url.split('//')[0]!r}; "
                     f"expected one of {', '.join(drivers)} or thrift://")


def preload(settings: SparkSettings) -> None:
    """With an ``sc://`` master, import pyspark's Connect client on a background thread.

    The client takes about half a second to import; the runner meanwhile reads its spec
    and verifies the outputs on S3, which mostly waits on the network. A classic runner
    does not preload: its JVM's start dwarfs the import, and an importer that never asks
    for Spark would pay for it. An import that fails here fails again, with its error,
    where the session is created."""
    if not settings.is_connect:
        return

    def load() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module("pyspark.sql.connect.session")

    threading.Thread(target=load, name="preload-pyspark", daemon=True).start()


def stop_session(session: SparkSession) -> None:
    """Stop ``session``; a Connect session first lets its pending operations go.

    pyspark releases each finished Connect operation from a background pool and
    ``stop()`` releases the session before that pool is drained, so without this the
    server logs an error per operation still being released."""
    if _is_connect_session(session):
        from pyspark.sql.connect.client.reattach import ExecutePlanResponseReattachableIterator

        ExecutePlanResponseReattachableIterator.shutdown()
    session.stop()


def _accepts_connections(host: str, port: int, timeout: float) -> bool:
    """True once ``host:port`` accepts a TCP connection, False if none within ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while connection_error(host, port, max(0.1, min(deadline - time.monotonic(), 2.0))):
        if time.monotonic() + 0.2 >= deadline:
            return False
        time.sleep(0.2)
    return True


def _is_connect_session(session: object) -> bool:
    return type(session).__module__.startswith("pyspark.sql.connect")


def spark_factory(settings: SparkSettings, *,
                  connect_timeout: float = CONNECT_TIMEOUT,
                  user: Callable[[], str | None] = lambda: None) -> Callable[..., SparkSession]:
    """Return ``get_spark(*, executor_cores=1)`` for ``settings`` (the importer contract,
    docs/contracts.md).

    ``user`` names the job's user when the session is made: with ``iceberg``, the
    session's catalogs are that user's (a classic session's from its start, a Connect
    session's set on it before it is returned), and a session without a user is refused
    with ``ValueError``.

    The session is created on the first call, not before: a runner that fails its checks
    never pays for a JVM. Later calls return the same session. With an ``sc://`` master,
    ``get_spark`` raises :class:`SparkUnavailable` when the server accepts no connection
    within ``connect_timeout`` seconds.
    """

    def get_spark(*, executor_cores: int = 1) -> SparkSession:
        from pyspark.sql import SparkSession

        job_user = user()
        if settings.is_iceberg and job_user is None:
            raise ValueError("CSEP_TABLE_FORMAT=iceberg: a session is given one job "
                             "user's catalog, and no user is known yet")
        if settings.is_connect:
            session = _connect_session(settings.master, connect_timeout)
            if settings.is_iceberg:
                assert job_user is not None
                _set_all(session, settings.session_conf(job_user))
            return session
        builder = SparkSession.builder.master(settings.master)
        for key, value in settings.spark_conf(executor_cores, job_user).items():
            builder = builder.config(key, value)
        # pyspark starts the JVM with a copy of os.environ: that is how the credentials
        # reach it without appearing on its command line.
        with _environment(settings.jvm_environment()):
            session = builder.getOrCreate()
        if settings.is_iceberg:
            # Catalogs are loaded on first use, from the session's configuration as it
            # is then: the credential goes over py4j's socket, not the JVM's command line.
            assert job_user is not None
            for key, value in settings.catalog_secrets(job_user).items():
                session.conf.set(key, value)
        return session

    return get_spark


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _set_all(session: SparkSession, conf: Mapping[str, str]) -> None:
    """Set ``conf`` on a Connect session in one request where the client can (pyspark
    4.0's ``_set_all``), else one request per setting. Catalogs are loaded on first use,
    so they are the user's from the session's first query on."""
    set_all = getattr(session.conf, "_set_all", None)
    if set_all is not None:
        set_all(dict(conf), silent=False)
        return
    for key, value in conf.items():
        session.conf.set(key, value)


def _connect_session(url: str, timeout: float) -> SparkSession:
    """A Spark Connect session on ``url``, once its server accepts a connection."""
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.client import DefaultChannelBuilder
    from pyspark.sql.connect.client.retries import DefaultPolicy

    builder = DefaultChannelBuilder(url)
    # The session itself connects lazily, on its first request, and pyspark retries an
    # unreachable server for minutes: wait for the port here, with a deadline. A plain
    # connection, not a gRPC channel: closing a channel waits out its connectivity
    # poller, a fifth of a second of every import.
    host, port = builder.endpoint.rsplit(":", 1)
    if not _accepts_connections(host, int(port), timeout):
        raise SparkUnavailable(f"sc://{builder.endpoint}", timeout)
    session = SparkSession.builder.remote(url).getOrCreate()
    # pyspark's @remote_only types the property as "Callable | property".
    session.client.set_retry_policies(  # type: ignore[operator]
        [DefaultPolicy(**_CONNECT_RETRIES)])
    return session
