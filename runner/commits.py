"""The Delta commits an attempt made, found by a marker in each commit's metadata.

The runner sets ``spark.databricks.delta.commitInfo.userMetadata`` to a marker unique to
the attempt on the session it hands out, so every Delta commit of that session carries
it. Afterwards the tables of the job user's namespace (databases starting with
``namespace_prefix``) are searched for commits bearing the marker. Commits to tables
outside the namespace are not found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from runner.logs import log
from contract.result import DeltaCommit

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


class MarkedSpark:
    """Wraps ``get_spark`` so the session is tagged with ``marker`` and remembered."""

    def __init__(self, factory: Callable[..., SparkSession], marker: str) -> None:
        self._factory = factory
        self.marker = marker
        self.session: SparkSession | None = None

    def get_spark(self, *, executor_cores: int = 1) -> SparkSession:
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
            return commits_marked(self.session, namespace_prefix, self.marker)
        except Exception as error:  # the import's outcome matters more than its report
            log.warning("could not list the Delta commits of this attempt: %s", error)
            return ()
        finally:
            try:
                self.session.stop()
            except Exception as error:  # a JVM that died already has nothing to stop
                log.warning("could not stop Spark: %s", error)


def commits_marked(spark: SparkSession, namespace_prefix: str,
                   marker: str) -> tuple[DeltaCommit, ...]:
    """Commits bearing ``marker`` in the namespace's Delta tables, by table and version."""
    from pyspark.errors import AnalysisException

    prefix = namespace_prefix.lower()
    found = []
    for database in spark.catalog.listDatabases():
        if not database.name.lower().startswith(prefix):
            continue
        for table in spark.catalog.listTables(database.name):
            if table.isTemporary:
                continue
            name = f"{database.name}.{table.name}"
            try:
                history = spark.sql(f"DESCRIBE HISTORY `{database.name}`.`{table.name}`")
            except AnalysisException:  # not a Delta table
                continue
            rows = (history.where(history.userMetadata == marker)
                    .select("version", "operation", "operationMetrics").collect())
            found.extend(DeltaCommit(table=name, version=row.version, operation=row.operation,
                                     metrics=dict(row.operationMetrics or {}))
                         for row in rows)
    return tuple(sorted(found, key=lambda c: (c.table, c.version)))
