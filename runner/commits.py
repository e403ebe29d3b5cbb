"""The Delta commits an attempt made, found by a marker in each commit's metadata.

The runner sets ``spark.databricks.delta.commitInfo.userMetadata`` to a marker unique to
the attempt on the session it hands out, so every Delta commit of that session carries
it. Afterwards the tables of the job user's namespace (databases starting with
``namespace_prefix``) are searched for commits bearing the marker. Commits to tables
outside the namespace are not found.

The search reads names only (``SHOW DATABASES``, ``SHOW TABLES``: no metastore call per
database or table) and each table's history newest first, a page at a time
(``DESCRIBE HISTORY ... LIMIT n``), stopping at a commit older than the session less
:data:`CLOCK_MARGIN_MICROS`: its cost follows the commits made to the table since
shortly before the attempt, not the length of the table's history, and the number of
tables in the namespace (one history read each, :data:`HISTORY_READERS` at a time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from runner.logs import log
from runner.spark import stop_session
from contract.result import DeltaCommit

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


class MarkedSpark:
    """Wraps ``get_spark`` so the session is tagged with ``marker`` and remembered."""

    def __init__(self, factory: Callable[..., SparkSession], marker: str) -> None:
        self._factory = factory
        self.marker = marker
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

    def finish(self, namespace_prefix: str) -> tuple[DeltaCommit, ...]:
        """The commits made through the session, then stop it. Never raises: a failure
        to list commits is logged and yields what was found."""
        if self.session is None:
            return ()
        try:
            return commits_marked(self.session, namespace_prefix, self.marker,
                                  since_micros=self.started_micros)
        except Exception as error:  # the import's outcome matters more than its report
            log.warning("could not list the Delta commits of this attempt: %s", error)
            return ()
        finally:
            try:
                stop_session(self.session)
            except Exception as error:  # a JVM that died already has nothing to stop
                log.warning("could not stop Spark: %s", error)


def commits_marked(spark: SparkSession, namespace_prefix: str, marker: str, *,
                   since_micros: int | None = None) -> tuple[DeltaCommit, ...]:
    """Commits bearing ``marker`` in the namespace's Delta tables, by table and version.

    ``since_micros``: when the marked session started (microseconds since the epoch);
    history older than that less :data:`CLOCK_MARGIN_MICROS` is not read. None reads
    every table's whole history.
    """
    prefix = namespace_prefix.lower()
    tables = []
    for database in _names(spark.sql("SHOW DATABASES")):
        if not database.lower().startswith(prefix):
            continue
        tables.extend((database, row.tableName)
                      for row in spark.sql(f"SHOW TABLES IN {_quote(database)}").collect()
                      if not row.isTemporary)
    cutoff = None if since_micros is None else since_micros - CLOCK_MARGIN_MICROS
    # Each history read waits on the server (a Delta log listing, then a small job);
    # a few at a time keep a namespace of many tables from adding up.
    with ThreadPoolExecutor(max_workers=HISTORY_READERS) as pool:
        pages = pool.map(lambda table: _table_commits(spark, *table, marker, cutoff), tables)
        found = [commit for page in pages for commit in page]
    return tuple(sorted(found, key=lambda c: (c.table, c.version)))


def _table_commits(spark: SparkSession, database: str, table: str, marker: str,
                   cutoff_micros: int | None) -> list[DeltaCommit]:
    """The marked commits of one table: pages of its newest history until a page reaches
    ``cutoff_micros`` or the table's first version."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    name = f"{database}.{table}"
    statement = f"DESCRIBE HISTORY {_quote(database)}.{_quote(table)}"
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
            return [DeltaCommit(table=name, version=r.version, operation=r.operation,
                                metrics=dict(r.operationMetrics or {}))
                    for r in rows if r.userMetadata == marker]
        limit *= 4


def _names(frame) -> list[str]:
    return [row[0] for row in frame.collect()]


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"
