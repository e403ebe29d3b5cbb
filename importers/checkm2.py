"""CheckM2 importer: ``quality_report.tsv`` -> ``<namespace_prefix><database>.<table>``.

``importer_meta``: ``database`` and ``table``. One row per genome, merged on the genome
name: the values of the job that completed last win, whatever order the jobs are imported
in (a replayed older job only adds genomes the table lacks); ``cts_job_id`` records the job
the row came from and ``cse_completion_time`` when that job completed.
"""

from __future__ import annotations

from typing import Any

from importers.delimited import Column, read_delimited
from importers.tables import merge, table_name
from runner.errors import BadDataError

REPORT = "quality_report.tsv"
JOB_ID_COLUMN = "cts_job_id"
COLUMNS = (
    Column("genome_name", "string", source="Name", nullable=False),
    Column("completeness", "double", source="Completeness"),
    Column("contamination", "double", source="Contamination"),
    Column("completeness_model_used", "string", source="Completeness_Model_Used"),
    Column("translation_table_used", "int", source="Translation_Table_Used"),
    Column("coding_density", "double", source="Coding_Density"),
    Column("contig_n50", "long", source="Contig_N50"),
    Column("average_gene_length", "double", source="Average_Gene_Length"),
    Column("genome_size", "long", source="Genome_Size"),
    Column("gc_content", "double", source="GC_Content"),
    Column("total_coding_sequences", "long", source="Total_Coding_Sequences"),
    Column("additional_notes", "string", source="Additional_Notes"),
)


def run_import(get_spark, job_info: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Merge every ``quality_report.tsv`` of the job into the table named by ``metadata``."""
    from pyspark.sql import functions as F

    reports = [o["file"] for o in job_info["outputs"] if o["file"].rsplit("/", 1)[-1] == REPORT]
    if not reports:
        raise BadDataError(f"job {job_info['id']} has no {REPORT} among its "
                           f"{len(job_info['outputs'])} output(s)")
    spark = get_spark()
    frames = [read_delimited(spark, report, COLUMNS, format="tsv") for report in reports]
    rows = frames[0]
    for frame in frames[1:]:
        rows = rows.unionByName(frame)
    rows = rows.withColumn(JOB_ID_COLUMN, F.lit(job_info["id"]))
    merge(spark, rows, table_name(job_info, metadata["database"], metadata["table"]),
          keys=["genome_name"], job_info=job_info)
