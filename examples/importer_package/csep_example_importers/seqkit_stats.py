"""``seqkit stats --tabular`` output: one row per sequence file of the job."""

import logging

from .lake import merge, read_tsv, table_name

logger = logging.getLogger(__name__)

SCHEMA = ("file STRING, format STRING, type STRING, num_seqs BIGINT, sum_len BIGINT, "
          "min_len BIGINT, avg_len DOUBLE, max_len BIGINT")


def run_import(get_spark, job_info, metadata):
    spark = get_spark()
    table = table_name(job_info, metadata)
    rows = read_tsv(spark, job_info, metadata.get("file_name", "stats.tsv"), SCHEMA)
    logger.info("importing job %s into %s", job_info["id"], table)
    merge(spark, rows, table, keys=["cts_job_id", "file"])
