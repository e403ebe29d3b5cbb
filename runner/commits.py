"""The Delta commits an attempt made, found by a marker in each commit's metadata.

The runner sets ``spark.databricks.delta.commitInfo.userMetadata`` to a marker unique to
the attempt on the session it hands out, so every Delta commit of that session carries
it. Afterwards the tables of the job user's namespace (databases starting with
``namespace_prefix``) are searched for commits bearing the marker. Commits to tables
outside the namespace are not found.

The search lists each namespace database's tables with their location and format in one
request (``SHOW TABLE EXTENDED``), then reads each Delta table's commits since shortly
before the session started (its start less :data:`CLOCK_MARGIN_MICROS`), newest
first, :data:`HISTORY_READERS` tables at a time. A table on S3 has its log read straight
from S3 (:mod:`runner.delta_log`) with the runner's S3 client, in a few small requests.
Any other table, or one whose log that client cannot read, has its history read by
Spark, a page at a time (``DESCRIBE HISTORY ... LIMIT n``), until a commit older than
that. Either way the cost follows the commits made since shortly before the attempt
and the number of tables in the namespace, not the length of the tables' history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attrs import frozen

from contract.result import DeltaCommit
from runner.delta_log import commits_since, s3_log
from runner.logs import log
from runner.spark import stop_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
#: A commit's time in the history is the storage's clock (the commit file's modification
#: time), the session's start the runner's: history older than the start by this much
#: cannot hold the attempt's commits. Every commit within the margin is read, so it is
#: kept short; clocks further apart than this (NTP keeps them within a second) could
#: leave commits out of the result's list. The import itself does not depend on it.
CLOCK_MARGIN_MICROS = 60 * 1_000_000
#: Most attempts make one or two commits per table, but a table imported into every few
#: seconds has more than that within the clock margin: an import every 3.5 s leaves 17
#: commits in a minute, and a page of 16 then took a second history read (0.3 s). A
#: page of 32 covers an import every 2 s and costs about what 16 did (the log's listing
#: and the request dominate, not the commits read).
_FIRST_PAGE = 32
#: Tables whose history is read at the same time.
HISTORY_READERS = 4


@frozen
class Table:
    database: str
    name: str
    #: Where its files are (``s3a://...``); None when not known.
    location: str | None

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.name}"


class MarkedSpark:
    """Wraps ``get_spark`` so the session is tagged with ``marker`` and remembered.

    ``s3``: makes the boto3 client that reads Delta logs on S3 for :meth:`finish` (see
    :func:`commits_marked`); None reads every table's history through Spark."""

    def __init__(self, factory: Callable[..., SparkSession], marker: str, *,
                 s3: Callable[[], Any] | None = None) -> None:
        self._factory = factory
        self.marker = marker
        self._s3 = s3
        self.session: SparkSession | None = None
        #: When the session was first handed out, in microseconds since the epoch.
        self.started_micros: int | None = None

    def get_spark(self, *, executor_cores: int = 1) -> SparkSession:
        if self.started_micros is None:
            self.started_micros = time.time_ns() // 1000
        session = self._factory(executor_cores=executor_cores)
        session.conf.set(USER_METADATA, self.marker)
        self.session = session
        return session

    def finish(self, namespace_prefix: str | None) -> tuple[DeltaCommit, ...]:
        """The commits made through the session, then stop it. Never raises: a failure
        to list commits is logged and yields what was found. A ``namespace_prefix`` of
        None only stops the session (Iceberg tables have no Delta commits)."""
        if self.session is None:
            return ()
        if namespace_prefix is None:
            self._stop()
            return ()
        try:
            return commits_marked(self.session, namespace_prefix, self.marker,
                                  since_micros=self.started_micros,
                                  s3=self._s3() if self._s3 else None)
        except Exception as error:  # the import's outcome matters more than its report
            log.warning("could not list the Delta commits of this attempt: %s", error)
            return ()
        finally:
            self._stop()

    def _stop(self) -> None:
        if self.session is None:
            return
        try:
            stop_session(self.session)
        except Exception as error:  # a JVM that died already has nothing to stop
            log.warning("could not stop Spark: %s", error)


def commits_marked(spark: SparkSession, namespace_prefix: str, marker: str, *,
                   since_micros: int | None = None,
                   s3: Any = None) -> tuple[DeltaCommit, ...]:
    """Commits bearing ``marker`` in the namespace's Delta tables, by table and version.

    ``since_micros``: when the marked session started (microseconds since the epoch);
    history older than that less :data:`CLOCK_MARGIN_MICROS` is not read. None reads
    every table's whole history, through Spark. ``s3``: a boto3 client to read the logs
    of tables on S3 with (falling back to Spark for a log it cannot read); None reads
    every history through Spark.
    """
    prefix = namespace_prefix.lower()
    tables = [table
              for database in _names(spark.sql("SHOW DATABASES"))
              if database.lower().startswith(prefix)
              for table in _delta_tables(spark, database)]
    cutoff = None if since_micros is None else since_micros - CLOCK_MARGIN_MICROS
    # Each history read waits on S3 or the server (a Delta log listing, then a small
    # job); a few at a time keep a namespace of many tables from adding up.
    with ThreadPoolExecutor(max_workers=HISTORY_READERS) as pool:
        pages = pool.map(lambda table: _table_commits(spark, table, marker, cutoff, s3),
                         tables)
        found = [commit for page in pages for commit in page]
    return tuple(sorted(found, key=lambda c: (c.table, c.version)))


def _delta_tables(spark: SparkSession, database: str) -> list[Table]:
    """The database's tables that may be Delta tables, with their location when known."""
    from pyspark.errors import AnalysisException

    try:
        rows = spark.sql(f"SHOW TABLE EXTENDED IN {_quote(database)} LIKE '*'").collect()
    except AnalysisException as error:  # a table whose metadata the catalog cannot load
        log.info("listing %s by name only: %s", database, error)
        return [Table(database, row.tableName, None)
                for row in spark.sql(f"SHOW TABLES IN {_quote(database)}").collect()
                if not row.isTemporary]
    tables = []
    for row in rows:
        if row.isTemporary:
            continue
        details = table_details(row.information)
        if details.get("Provider", "delta").lower() == "delta":
            tables.append(Table(database, row.tableName, details.get("Location")))
    return tables


def table_details(information: str) -> dict[str, str]:
    """``SHOW TABLE EXTENDED``'s ``information`` text ("Key: value" lines) as a dict."""
    details = {}
    for line in information.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key and key not in details:
            details[key] = value.strip()
    return details


def _table_commits(spark: SparkSession, table: Table, marker: str,
                   cutoff_micros: int | None, s3: Any) -> list[DeltaCommit]:
    if s3 is not None and cutoff_micros is not None and table.location and s3_log(
            table.location):
        cutoff = datetime.fromtimestamp(cutoff_micros / 1_000_000, UTC)
        try:
            return [DeltaCommit(table=table.qualified, version=commit.version,
                                operation=str(commit.info.get("operation", "")),
                                metrics=_metrics(commit.info.get("operationMetrics")))
                    for commit in commits_since(s3, table.location, cutoff)
                    if commit.info.get("userMetadata") == marker]
        except Exception as error:  # the log is the catalog's, or out of the client's reach
            log.info("reading %s's history through Spark: its log at %s could not be "
                     "read from S3 (%s: %s)", table.qualified, table.location,
                     type(error).__name__, error)
    return _history_commits(spark, table, marker, cutoff_micros)


def _metrics(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _history_commits(spark: SparkSession, table: Table, marker: str,
                     cutoff_micros: int | None) -> list[DeltaCommit]:
    """The marked commits of one table through Spark: pages of its newest history until a
    page reaches ``cutoff_micros`` or the table's first version."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    statement = f"DESCRIBE HISTORY {_quote(table.database)}.{_quote(table.name)}"
    limit = None if cutoff_micros is None else _FIRST_PAGE
    while True:
        try:
            history = spark.sql(statement if limit is None else f"{statement} LIMIT {limit}")
        except AnalysisException:  # not a Delta table
            return []
        old = (F.lit(False) if cutoff_micros is None
               else history.timestamp < F.expr(f"timestamp_micros({cutoff_micros})"))
        rows = history.select("version", "operation", "operationMetrics", "userMetadata",
                              old.alias("old")).collect()
        exhausted = limit is None or len(rows) < limit or any(r.old for r in rows) or (
            min((r.version for r in rows), default=0) == 0)
        if exhausted:
            return [DeltaCommit(table=table.qualified, version=r.version,
                                operation=r.operation,
                                metrics=dict(r.operationMetrics or {}))
                    for r in rows if r.userMetadata == marker]
        assert limit is not None  # without a limit the first page is the whole history
        limit *= 4


def _names(frame) -> list[str]:
    return [row[0] for row in frame.collect()]


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"
