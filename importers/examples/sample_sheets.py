"""An importer of S3 uploads: sample sheets (TSV) dropped into a dataplane bucket go to
``<namespace_prefix><database>.<table>`` of the uploader.

``sample_sheets.yaml`` beside it registers it with ``source: s3``: every object under
``sample-sheets/`` ending in ``.tsv`` in the bucket ``cdm-dataplane`` is imported as its
uploader's job. ``importer_meta``: ``database`` and ``table``.

A sheet has a header line and the columns below. Each row keeps where it came from: the
object (``bucket/key``) and the eTag of the upload. Rows are merged on the object and the
sample id, so uploading the same sheet again changes nothing, a corrected upload of the
sheet updates its rows, and a replayed older upload cannot put older values back (the
helper library's completion-time guard: an S3 job's completion time is its event time).
"""

from __future__ import annotations

from typing import Any

from importers.delimited import Column, read_delimited
from importers.tables import merge, table_name
from runner.errors import BadDataError

COLUMNS = (
    Column("sample_id", "string", nullable=False),
    Column("organism", "string"),
    Column("collected_on", "date"),
    Column("depth_m", "double"),
)


def run_import(get_spark, job_info: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Merge the uploaded sheet into the table named by ``metadata``."""
    from pyspark.sql import functions as F

    if job_info.get("source") != "s3":
        raise BadDataError(f"job {job_info['id']}: this importer takes S3 uploads only")
    [sheet] = job_info["outputs"]  # an S3 job's one output is the object itself
    spark = get_spark()
    rows = (read_delimited(spark, sheet["file"], COLUMNS, format="tsv")
            .withColumn("source_object", F.lit(sheet["file"]))
            .withColumn("source_etag", F.lit(job_info["object"]["etag"])))
    merge(spark, rows, table_name(job_info, metadata["database"], metadata["table"]),
          keys=["source_object", "sample_id"], job_info=job_info)
