"""Delta tables for importers: create a table by name if missing, MERGE a DataFrame in.

Tables live in the job user's namespace: database ``<namespace_prefix><database>``
(:func:`table_name`). Both operations are safe to repeat, which is what makes an import
idempotent: replaying a job finds its rows already there and changes nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from runner.errors import BadDataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

Mode = Literal["upsert", "insert"]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


def ensure_table(spark: SparkSession, name: str, schema: StructType) -> None:
    """Create the database and the Delta table ``name`` with ``schema`` unless they exist.
    An existing table is left as it is."""
    quoted = quote(name)
    if "." in name:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {quoted.rsplit('.', 1)[0]}")
    columns = ", ".join(f"{quote(f.name)} {f.dataType.simpleString()}"
                        f"{'' if f.nullable else ' NOT NULL'}" for f in schema.fields)
    spark.sql(f"CREATE TABLE IF NOT EXISTS {quoted} ({columns}) USING delta")


def merge(spark: SparkSession, source: DataFrame, name: str, keys: Sequence[str], *,
          mode: Mode = "upsert") -> None:
    """MERGE ``source`` into table ``name`` (created if missing) on ``keys``.

    ``insert``: rows whose key is not in the table are inserted, others are left alone.
    ``upsert``: in addition, a row whose key is there is updated, but only when a value
    differs, so re-merging the same rows makes no change. Raises :class:`BadDataError`
    when a key is null or two source rows share a key (the MERGE would be ambiguous).
    """
    if not keys:
        raise ValueError(f"merge into {name}: no merge keys given")
    _check_keys(source, keys, name)
    ensure_table(spark, name, source.schema)
    view = f"csep_source_{uuid.uuid4().hex}"
    source.createOrReplaceTempView(view)
    on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys)
    statement = f"MERGE INTO {quote(name)} t USING {view} s ON {on}"
    others = [c for c in source.columns if c not in keys]
    if mode == "upsert" and others:
        changed = " OR ".join(f"NOT (t.{quote(c)} <=> s.{quote(c)})" for c in others)
        statement += f" WHEN MATCHED AND ({changed}) THEN UPDATE SET *"
    statement += " WHEN NOT MATCHED THEN INSERT *"
    try:
        spark.sql(statement)
    finally:
        spark.catalog.dropTempView(view)


def _check_keys(source: DataFrame, keys: Sequence[str], name: str) -> None:
    from pyspark.sql import functions as F

    null = source.where(" OR ".join(f"{quote(k)} IS NULL" for k in keys)).limit(1).collect()
    if null:
        raise BadDataError(f"merge into {name}: a row has a null merge key "
                           f"({', '.join(keys)}): {null[0].asDict()}")
    repeated = (source.groupBy(*keys).agg(F.count(F.lit(1)).alias("rows"))
                .where("rows > 1").limit(1).collect())
    if repeated:
        row = repeated[0].asDict()
        count = row.pop("rows")
        raise BadDataError(f"merge into {name}: {count} rows share the merge key {row}")
