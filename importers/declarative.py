"""The declarative importer: a YAML file alone imports TSV/CSV outputs, no Python needed.

Its instructions are the ``importer_meta`` of the importer's YAML::

    importer_meta:
      file_pattern: "*.stats.tsv"  # fnmatch pattern on the output's file name
      format: tsv                  # tsv or csv; the first line is the header
      database: seqkit             # table: <namespace_prefix>seqkit.stats
      table: stats
      merge_keys: [file]           # columns identifying a row
      mode: upsert                 # or insert: existing rows are never changed
      guard: true                  # rows carry cse_completion_time; an older job's replay
                                   # never updates a newer row. false: last merge wins
      job_id_column: cts_job_id    # lineage column (default); null for none
      null_values: ["", "NA"]      # cells read as null in nullable columns (default [""])
      columns:                     # in table order; source = header name (default: name)
        - {name: file, type: string, nullable: false}
        - {name: num_seqs, type: long, source: num_seqs}

Every output whose file name matches is read and merged; a job without a matching output
is bad data (exit 65).
"""

from __future__ import annotations

import fnmatch
from typing import Any

import attrs

from common.convert import StructureError, structure
from importers.delimited import Column, Format, read_delimited
from importers.tables import COMPLETION_TIME_COLUMN, Mode, merge, table_name
from runner.errors import BadDataError


def _keys_declared(instance: DeclarativeImport, attribute: attrs.Attribute,
                   keys: tuple[str, ...]) -> None:
    columns = {c.name: c for c in instance.columns}
    if not keys:
        raise ValueError("merge_keys: give at least one column")
    for key in keys:
        if key not in columns:
            raise ValueError(f"merge_keys: {key!r} is not a declared column")
        if columns[key].nullable:
            raise ValueError(f"merge_keys: column {key!r} must be declared nullable: false")


def _not_reserved(instance: DeclarativeImport, attribute: attrs.Attribute, value) -> None:
    names = [c.name for c in value] if attribute.name == "columns" else [value]
    if COMPLETION_TIME_COLUMN in names:
        raise ValueError(f"{attribute.name}: {COMPLETION_TIME_COLUMN!r} is reserved, the "
                         f"helper library writes it")


@attrs.frozen
class DeclarativeImport:
    file_pattern: str
    database: str
    table: str
    columns: tuple[Column, ...] = attrs.field(validator=_not_reserved)
    merge_keys: tuple[str, ...] = attrs.field(validator=_keys_declared)
    format: Format = "tsv"
    mode: Mode = "upsert"
    job_id_column: str | None = attrs.field(default="cts_job_id", validator=_not_reserved)
    guard: bool = True
    null_values: tuple[str, ...] = ("",)


def instructions(metadata: dict[str, Any]) -> DeclarativeImport:
    """Structure ``importer_meta``; ``ValueError`` naming the bad field."""
    try:
        return structure(metadata, DeclarativeImport)
    except StructureError as error:
        raise ValueError(f"declarative importer_meta: {error}") from error


def check_importer_meta(metadata: dict[str, Any]) -> None:
    """Called by the registry at load: a YAML with bad instructions is refused there."""
    instructions(metadata)


def run_import(get_spark, job_info: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Merge every output matching ``file_pattern`` into the declared table."""
    from pyspark.sql import functions as F

    plan = instructions(metadata)
    files = [o["file"] for o in job_info["outputs"]
             if fnmatch.fnmatchcase(o["file"].rsplit("/", 1)[-1], plan.file_pattern)]
    if not files:
        raise BadDataError(f"job {job_info['id']}: no output file matches "
                           f"{plan.file_pattern!r}")
    spark = get_spark()
    frames = [read_delimited(spark, f, plan.columns, format=plan.format,
                             null_values=plan.null_values) for f in files]
    rows = frames[0]
    for frame in frames[1:]:
        rows = rows.unionByName(frame)
    if plan.job_id_column:
        rows = rows.withColumn(plan.job_id_column, F.lit(job_info["id"]))
    merge(spark, rows, table_name(job_info, plan.database, plan.table),
          keys=list(plan.merge_keys), job_info=job_info, mode=plan.mode, guard=plan.guard)
