"""A CheckM2 importer written as third parties write them, from the importer contract
alone (docs/contracts.md, section 3): nothing of this project is imported.

It reads every ``quality_report.tsv`` of the job with ``spark.read.csv`` on ``s3a://``
paths (all columns as strings), checks the header, casts the columns to the table's
schema, creates the table from the first job's rows (``spark.catalog.tableExists``, else
``saveAsTable``) and MERGEs later jobs' rows on the genome name with delta-spark's
``DeltaTable`` API. A missing ``importer_meta`` key is a ``ValueError``. The benchmark
(``benchmarks/import_latency.py --importer``) measures it beside the built-in CheckM2
importer; the integration tests run it through the dispatcher on classic Spark and over
Spark Connect.
"""

import logging

from delta.tables import DeltaTable
from pyspark.sql.functions import col, lit
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

logger = logging.getLogger(__name__)

_QUALITY_REPORT = "quality_report.tsv"
_JOB_ID = "cts_job_id"

SCHEMA = StructType([
    StructField("Name", StringType()),
    StructField("Completeness", DoubleType()),
    StructField("Contamination", DoubleType()),
    StructField("Completeness_Model_Used", StringType()),
    StructField("Translation_Table_Used", IntegerType()),
    StructField("Coding_Density", DoubleType()),
    StructField("Contig_N50", LongType()),
    StructField("Average_Gene_Length", DoubleType()),
    StructField("Genome_Size", LongType()),
    StructField("GC_Content", DoubleType()),
    StructField("Total_Coding_Sequences", LongType()),
    StructField("Additional_Notes", StringType()),
    StructField(_JOB_ID, StringType()),
])


def run_import(get_spark, job_info, metadata):
    deltatable = metadata.get("deltatable")
    if not deltatable:
        raise ValueError("Expected a 'deltatable' key in the importer metadata with the "
                         "database and table as the value")
    reports = [o["file"] for o in job_info["outputs"] if o["file"].endswith(_QUALITY_REPORT)]
    if not reports:
        raise ValueError(f"No CheckM2 quality report among the outputs of job {job_info['id']}")
    table = job_info["namespace_prefix"] + deltatable
    logger.info("Importing %d CheckM2 report(s) of job %s into %s", len(reports),
                job_info["id"], table)

    spark = get_spark()
    df = (spark.read.option("header", True).option("sep", "\t")
          .csv([f"s3a://{report}" for report in reports])
          .withColumn(_JOB_ID, lit(job_info["id"])))
    missing = {field.name for field in SCHEMA} - set(df.columns)
    if missing:
        raise ValueError(f"Missing columns in the CheckM2 report: {sorted(missing)}")
    df = df.select(*[col(field.name).cast(field.dataType).alias(field.name)
                     for field in SCHEMA])

    spark.sql(f"CREATE DATABASE IF NOT EXISTS {table.split('.')[0]}")
    if not spark.catalog.tableExists(table):
        logger.info("Creating Delta table %s", table)
        df.write.format("delta").saveAsTable(table)
        return
    (DeltaTable.forName(spark, table).alias("target")
     .merge(df.alias("source"), "target.Name = source.Name")
     .whenMatchedUpdateAll()
     .whenNotMatchedInsertAll()
     .execute())
    logger.info("Merged job %s into %s", job_info["id"], table)
