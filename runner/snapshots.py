"""The Iceberg snapshots an attempt committed, found by a marker in each one's summary.

The runner sets ``spark.sql.iceberg.snapshot-property.csep-attempt`` to a marker unique
to the attempt on the session it hands out (:class:`runner.commits.MarkedSpark`). Iceberg
(1.11 and later) copies every session setting of that prefix into the summary of each
snapshot the session commits, whatever wrote it: ``writeTo(...).create()``/``append()``,
SQL ``MERGE INTO``, ``INSERT``, ``DELETE``, ``UPDATE``. Afterwards the tables of the job
user's catalog (``my``: the top-level namespaces and their tables) are searched for
snapshots whose summary bears the marker, :data:`READERS` tables at a time, each through
its ``snapshots`` metadata table (read from the table's metadata, not its data files).
Snapshots in another catalog are not found.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from contract.result import IcebergSnapshot
from runner.logs import log
from runner.spark import DEFAULT_CATALOG

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The summary entry holding the attempt's marker.
MARKER_PROPERTY = "csep-attempt"
#: The session setting Iceberg copies into each snapshot's summary as
#: :data:`MARKER_PROPERTY`.
SNAPSHOT_PROPERTY = f"spark.sql.iceberg.snapshot-property.{MARKER_PROPERTY}"
#: Tables whose snapshots are read at the same time: each read waits on the catalog
#: (loading the table) and on S3 (its metadata file) more than on Spark.
READERS = 4


def snapshots_marked(spark: SparkSession, marker: str,
                     catalog: str = DEFAULT_CATALOG) -> tuple[IcebergSnapshot, ...]:
    """Snapshots whose summary has ``csep-attempt`` = ``marker``, in the tables of
    ``catalog``'s top-level namespaces, by table and commit time. Tables are named
    ``namespace.table``, as in the catalog. Raises what Spark raises when the catalog
    cannot be listed; a table whose snapshots cannot be read is logged and skipped."""
    namespaces = [row[0] for row in spark.sql(f"SHOW NAMESPACES IN {_quote(catalog)}")
                  .collect()]
    tables = [(namespace, row.tableName)
              for namespace in namespaces
              for row in spark.sql(f"SHOW TABLES IN {_quote(catalog)}.{_quote(namespace)}")
              .collect()
              if not row.isTemporary]
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        found = pool.map(lambda table: _table_snapshots(spark, catalog, table[0], table[1],
                                                         marker), tables)
        return tuple(snapshot for page in found for snapshot in page)


def _table_snapshots(spark: SparkSession, catalog: str, namespace: str, table: str,
                     marker: str) -> list[IcebergSnapshot]:
    from pyspark.sql import functions as F

    name = f"{namespace}.{table}"
    try:
        rows = (spark.table(".".join(map(_quote, (catalog, namespace, table, "snapshots"))))
                .where(F.col("summary")[MARKER_PROPERTY] == F.lit(marker))
                .orderBy("committed_at", "snapshot_id")
                .select("snapshot_id", "operation", "summary")
                .collect())
    except Exception as error:  # a view, a table being dropped, a catalog hiccup
        log.info("could not read the snapshots of %s: %s: %s", name, type(error).__name__,
                 str(error).splitlines()[0] if str(error) else "")
        return []
    return [IcebergSnapshot(table=name, snapshot_id=row.snapshot_id,
                            operation=row.operation or "", summary=counts(row.summary))
            for row in rows]


def counts(summary: dict[str, str] | None) -> dict[str, str]:
    """The entries of a snapshot's summary that are counts (``added-records``,
    ``total-data-files``, ``changed-partition-count``, ...): those whose value is a whole
    number. Versions, ids and the marker are left out."""
    return {key: value for key, value in (summary or {}).items()
            if value is not None and value.isdigit()}


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"
