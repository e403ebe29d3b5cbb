"""What the package's importers share: reading a job's TSV outputs and merging rows into
a Delta table, created on first use. Written only against the importer
contract (pyspark, delta-spark and the ``job_info``/``metadata`` it describes)."""

import logging

from delta.tables import DeltaTable
from pyspark.sql import functions as F

logger = logging.getLogger(__name__)


def required(metadata, key):
    """``metadata[key]``; a missing key is a ``ValueError`` naming it."""
    if key not in (metadata or {}):
        raise ValueError(f"importer_meta has no {key!r}")
    return metadata[key]


def table_name(job_info, metadata):
    """``<namespace_prefix><database>.<table>``: the job user's own database."""
    database = job_info["namespace_prefix"] + required(metadata, "database")
    return f"{database}.{required(metadata, 'table')}"


def read_tsv(spark, job_info, file_name, schema):
    """The rows of every output named ``file_name``, with the job's id; ``ValueError``
    when the job has no such output."""
    paths = ["s3a://" + o["file"] for o in job_info["outputs"]
             if o["file"].rsplit("/", 1)[-1] == file_name]
    if not paths:
        raise ValueError(f"job {job_info['id']} has no output named {file_name}")
    frame = (spark.read.option("header", True).option("sep", "\t")
             .schema(schema).csv(paths))
    return frame.withColumn("cts_job_id", F.lit(job_info["id"]))


def merge(spark, frame, table, keys):
    """Insert ``frame``'s new rows and update the rows whose ``keys`` match; the table
    (and its database) are created from the first rows written."""
    database = table.split(".")[0]
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
    if not spark.catalog.tableExists(table):
        logger.info("creating %s", table)
        frame.write.format("delta").saveAsTable(table)
        return
    condition = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    (DeltaTable.forName(spark, table).alias("t")
     .merge(frame.alias("s"), condition)
     .whenMatchedUpdateAll()
     .whenNotMatchedInsertAll()
     .execute())
    logger.info("merged into %s", table)
