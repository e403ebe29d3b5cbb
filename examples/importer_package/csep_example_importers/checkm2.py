"""CheckM2's ``quality_report.tsv``: one row per genome."""

import logging

from csep_example_importers.lake import merge, read_tsv, table_name

logger = logging.getLogger(__name__)

SCHEMA = ("genome_name STRING, completeness DOUBLE, contamination DOUBLE, "
          "completeness_model_used STRING, translation_table_used INT, "
          "coding_density DOUBLE, contig_n50 BIGINT, average_gene_length DOUBLE, "
          "genome_size BIGINT, gc_content DOUBLE, total_coding_sequences BIGINT, "
          "additional_notes STRING")


def run_import(get_spark, job_info, metadata):
    spark = get_spark(executor_cores=1)
    table = table_name(job_info, metadata)
    logger.info("importing job %s into %s", job_info["id"], table)
    rows = read_tsv(spark, job_info, "quality_report.tsv", SCHEMA)
    merge(spark, rows, table, keys=["genome_name"])
