"""Tables for importers: create a table by name if missing, MERGE a DataFrame in.

Tables live in the job user's namespace: database ``<namespace_prefix><database>``
(:func:`table_name`). They are Delta tables, or Iceberg tables when the session's default
catalog is an Iceberg catalog (the runner's ``iceberg`` table format, where the prefix is
``""`` and the namespace is in the user's own catalog): the same calls work on both.
Both operations are safe to repeat, which is what makes an import idempotent: replaying
a job finds its rows already there and changes nothing.

Replays never move data backwards: :func:`merge` stamps every row it writes with the
completion time of its job (:data:`COMPLETION_TIME_COLUMN`) and updates a matched row only
for a job that completed at the same time or later. Delivery is at least once, so a job
older than the one that last wrote a row may arrive again (a dead letter replayed, a
redelivery after a crash); it inserts the keys the table lacks and leaves the newer rows
as they are.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from common.convert import structure
from runner.errors import BadDataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructField, StructType

Mode = Literal["upsert", "insert"]
#: The guard column: the completion time of the CTS job that last wrote the row.
COMPLETION_TIME_COLUMN = "cse_completion_time"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Spark's error conditions for a table, or its database, that does not exist.
_NOT_FOUND = frozenset({"TABLE_OR_VIEW_NOT_FOUND", "SCHEMA_NOT_FOUND"})


def table_name(job_info: Mapping[str, Any], database: str, table: str) -> str:
    """``<namespace_prefix><database>.<table>``, e.g. ``u_alice__checkm2.quality_report``."""
    return f"{job_info['namespace_prefix']}{database}.{table}"


def quote(name: str) -> str:
    """Back-quote a ``database.table`` or column name; ``ValueError`` for anything that is
    not plain identifiers."""
    parts = name.split(".")
    bad = [p for p in parts if not _IDENTIFIER.match(p)]
    if bad:
        raise ValueError(f"{name!r}: {bad[0]!r} is not a plain identifier (letters, digits, _)")
    return ".".join(f"`{p}`" for p in parts)


def completion_micros(job_info: Mapping[str, Any]) -> int:
    """``job_info["completion_time"]`` (ISO 8601 with a UTC offset, or an aware datetime)
    as microseconds since the epoch, the precision of a Spark ``TIMESTAMP``; digits beyond
    the microsecond are dropped. Raises ``ValueError`` naming the job and the field for a
    missing value, a value without an offset or one that is not a time."""
    job = job_info.get("id", "?")
    if "completion_time" not in job_info:
        raise ValueError(f"job {job}: job_info has no completion_time")
    try:
        # The one ISO 8601 rule of the contract: an offset is required, never guessed.
        at = structure(job_info["completion_time"], datetime)
    except (ValueError, TypeError) as error:
        raise ValueError(f"job {job}: job_info completion_time: {error}") from error
    return (at - _EPOCH) // timedelta(microseconds=1)


def table_provider(spark: SparkSession) -> str:
    """``iceberg`` when the session's default catalog is an Iceberg catalog (an
    ``org.apache.iceberg`` class), else ``delta``."""
    catalog = spark.conf.get("spark.sql.defaultCatalog", "spark_catalog")
    implementation = spark.conf.get(f"spark.sql.catalog.{catalog}", "") or ""
    return "iceberg" if implementation.startswith("org.apache.iceberg.") else "delta"


def ensure_table(spark: SparkSession, name: str, schema: StructType) -> None:
    """Create the database and the table ``name`` with ``schema`` unless they exist, in
    the session's table format (:func:`table_provider`). An existing table is left as it
    is."""
    quoted = quote(name)
    if "." in name:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {quoted.rsplit('.', 1)[0]}")
    columns = ", ".join(f"{quote(f.name)} {f.dataType.simpleString()}"
                        f"{'' if f.nullable else ' NOT NULL'}" for f in schema.fields)
    spark.sql(f"CREATE TABLE IF NOT EXISTS {quoted} ({columns}) "
              f"USING {table_provider(spark)}")


def merge(spark: SparkSession, source: DataFrame, name: str, keys: Sequence[str], *,
          job_info: Mapping[str, Any], mode: Mode = "upsert", guard: bool = True) -> None:
    """MERGE ``source`` into table ``name`` (created if missing) on ``keys`` for the job
    ``job_info``.

    ``insert``: rows whose key is not in the table are inserted, others are left alone.
    ``upsert``: in addition, a row whose key is there is updated, but only when a value
    differs, so re-merging the same rows makes no change.

    ``guard`` (the default): every row written carries the job's completion time in
    :data:`COMPLETION_TIME_COLUMN`, and ``upsert`` updates a matched row only when that
    time is no older than the row's (null, in rows written before the table had the
    column, counts as oldest). A table without the column gets it (``ALTER TABLE ADD
    COLUMNS``) before the MERGE. ``guard=False`` opts out: no column, and a matched row
    takes the values of whichever job merges last; for insert-only or snapshot tables.

    Raises :class:`BadDataError` when a key is null or two source rows share a key (the
    MERGE would be ambiguous); ``ValueError`` for no keys, a source that has the guard
    column itself, a bad ``completion_time``, or a table whose guard column does not fit
    ``guard`` (present but not a TIMESTAMP; present with ``guard=False``).
    """
    from pyspark.sql import functions as F

    if not keys:
        raise ValueError(f"merge into {name}: no merge keys given")
    if COMPLETION_TIME_COLUMN in source.columns:
        raise ValueError(f"merge into {name}: the source has a column "
                         f"{COMPLETION_TIME_COLUMN!r}; merge() writes that column itself")
    if guard:
        micros = completion_micros(job_info)
        source = source.withColumn(COMPLETION_TIME_COLUMN,
                                   F.expr(f"timestamp_micros({micros})"))
    _check_keys(source, keys, name)
    # Most merges go to a table that exists: its schema is one request, where the
    # CREATE ... IF NOT EXISTS statements are two.
    fields = table_fields(spark, name)
    if fields is None:
        ensure_table(spark, name, source.schema)
        fields = table_fields(spark, name)
    _check_guard_column(spark, name, fields or {}, guard)
    view = f"csep_source_{uuid.uuid4().hex}"
    source.createOrReplaceTempView(view)
    try:
        spark.sql(merge_statement(name, view, keys, source.columns, mode=mode, guard=guard))
    finally:
        spark.catalog.dropTempView(view)


def merge_statement(name: str, view: str, keys: Sequence[str], columns: Sequence[str], *,
                    mode: Mode, guard: bool) -> str:
    """The MERGE of :func:`merge`: target ``t`` (table ``name``), source ``s`` (view
    ``view`` with ``columns``, including the guard column when ``guard``)."""
    on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys)
    statement = f"MERGE INTO {quote(name)} t USING {view} s ON {on}"
    others = [c for c in columns if c not in keys]
    if mode == "upsert" and others:
        # The guard column is among ``others``: a newer job with the same values still
        # moves the row's time forward, so a replay older than it cannot pass the guard.
        condition = "(" + " OR ".join(f"NOT (t.{quote(c)} <=> s.{quote(c)})"
                                      for c in others) + ")"
        if guard:
            column = quote(COMPLETION_TIME_COLUMN)
            condition = f"(t.{column} IS NULL OR s.{column} >= t.{column}) AND {condition}"
        statement += f" WHEN MATCHED AND {condition} THEN UPDATE SET *"
    statement += " WHEN NOT MATCHED THEN INSERT *"
    return statement


def table_fields(spark: SparkSession, name: str) -> dict[str, StructField] | None:
    """The columns of table ``name`` by name; None when there is no such table (or
    database)."""
    from pyspark.errors import AnalysisException

    try:
        return {f.name: f for f in spark.table(quote(name)).schema.fields}
    except AnalysisException as error:
        if error.getCondition() in _NOT_FOUND:
            return None
        raise


def _check_guard_column(spark: SparkSession, name: str, fields: Mapping[str, StructField],
                        guard: bool) -> None:
    from pyspark.sql.types import TimestampType

    column = fields.get(COMPLETION_TIME_COLUMN)
    if column is None and guard:
        _add_guard_column(spark, name)
    elif column is not None and not guard:
        raise ValueError(f"merge into {name}: the table has {COMPLETION_TIME_COLUMN}, so its "
                         f"rows are guarded by completion time; merge with guard=True")
    elif column is not None and not isinstance(column.dataType, TimestampType):
        raise ValueError(f"merge into {name}: column {COMPLETION_TIME_COLUMN} is "
                         f"{column.dataType.simpleString()}, expected timestamp")


def _add_guard_column(spark: SparkSession, name: str) -> None:
    # A table created before the guard existed: existing rows get null, the oldest time,
    # so the next guarded job updates them as an unguarded MERGE would have.
    try:
        spark.sql(f"ALTER TABLE {quote(name)} ADD COLUMNS "
                  f"({quote(COMPLETION_TIME_COLUMN)} TIMESTAMP)")
    except Exception:
        # Another import of the same table may have added it first; only then is the
        # failure harmless.
        if COMPLETION_TIME_COLUMN not in spark.table(quote(name)).columns:
            raise


def _check_keys(source: DataFrame, keys: Sequence[str], name: str) -> None:
    """One query for both ways a MERGE's source can be ambiguous: a null key, a key two
    rows share."""
    from pyspark.sql import functions as F

    count = "__csep_rows"
    null_key = " OR ".join(f"{quote(k)} IS NULL" for k in keys)
    found = (source.groupBy(*keys).agg(F.count(F.lit(1)).alias(count))
             .where(f"{count} > 1 OR {null_key}").limit(1).collect())
    if not found:
        return
    row = found[0].asDict()
    rows = row.pop(count)
    if any(row[k] is None for k in keys):
        raise BadDataError(f"merge into {name}: {rows} row(s) with a null merge key "
                           f"({', '.join(keys)}): {row}")
    raise BadDataError(f"merge into {name}: {rows} rows share the merge key {row}")
