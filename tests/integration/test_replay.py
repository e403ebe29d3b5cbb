"""Replays never move data backwards, against real Spark, Delta, S3 and the metastore.

One Spark process runs every import of this module in order (a JVM start per import would
cost minutes), calling each importer's ``run_import`` with the ``job_info`` the runner
builds (``JobInfo.for_importer``); it reports the table version after each step. The
tables are then read at those versions by delta-rs, without Spark or the metastore.

Completion times: OLD is 10:00Z written as 12:00+02:00, so it sorts after NEW (11:00Z) as
text; the guard must order instants.
"""

from __future__ import annotations

import json
import textwrap
from datetime import datetime

import pytest
from deltalake import DeltaTable

from contract.spec import JobInfo, namespace_prefix
from importers.tables import COMPLETION_TIME_COLUMN as AT
from tests.conftest import run_python
from tests.integration.test_runner import HEADER, upload

USER = "replay"
PREFIX = namespace_prefix(USER)
CHECKM2 = f"{PREFIX}checkm2.quality_report"
LEGACY = f"{PREFIX}seqkit.stats"
SNAPSHOT = f"{PREFIX}seqkit.snapshot"

OLD, NEW, NEWEST = "2026-11-20T12:00:00+02:00", "2026-11-20T11:00:00+00:00", "2026-11-20T12:00:00Z"
EARLIEST = "2026-11-20T09:00:00+00:00"


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def report(*genomes: tuple[str, float]) -> str:
    """A quality report; only the genome name and completeness vary."""
    return HEADER + "".join(
        f"{name}\t{completeness}\t0.6\tNeural Network (Specific Model)\t11\t0.89\t120000\t"
        f"310.5\t4500000\t0.52\t4100\t\n" for name, completeness in genomes)


def stats(*files: tuple[str, int]) -> str:
    return "file\tnum_seqs\n" + "".join(f"{name}\t{count}\n" for name, count in files)


STATS_META = {"file_pattern": "*.stats.tsv", "database": "seqkit", "table": "stats",
              "merge_keys": ["file"],
              "columns": [{"name": "file", "type": "string", "nullable": False},
                          {"name": "num_seqs", "type": "long"}]}
SNAPSHOT_META = {**STATS_META, "table": "snapshot", "guard": False}
CHECKM2_META = {"database": "checkm2", "table": "quality_report"}

# A table as the helper library made it before the guard: no completion time column.
LEGACY_SQL = [
    f"CREATE DATABASE IF NOT EXISTS {PREFIX}seqkit",
    f"CREATE TABLE {LEGACY} (file STRING NOT NULL, num_seqs BIGINT, "
    "cts_job_id STRING NOT NULL) USING delta",
    f"INSERT INTO {LEGACY} VALUES ('contigs.fa', 1, 'job-legacy')",
]

SCRIPT = textwrap.dedent("""
    import importlib, json, sys
    from importers.tables import merge
    from runner.spark import SparkSettings, spark_factory

    get_spark = spark_factory(SparkSettings.from_env())
    spark = get_spark()
    report = {}
    try:
        for statement in PLAN["legacy_sql"]:
            spark.sql(statement)
        for label, module, job_info, meta, table in PLAN["steps"]:
            importlib.import_module(module).run_import(get_spark, job_info, meta)
            version = spark.sql(f"DESCRIBE HISTORY {table} LIMIT 1").first()["version"]
            report[label] = version
        # Unguarded into a guarded table: refused before any write.
        rows = spark.table(PLAN["checkm2"]).drop("cse_completion_time")
        try:
            merge(spark, rows, PLAN["checkm2"], ["genome_name"], job_info={}, guard=False)
        except ValueError as error:
            report["unguarded_error"] = str(error)
        report["after_refusal"] = spark.sql(
            f"DESCRIBE HISTORY {PLAN['checkm2']} LIMIT 1").first()["version"]
    finally:
        spark.stop()
    print(json.dumps(report))
""")


def job(s3, job_id: str, completion_time: str, name: str, body: str) -> dict:
    output = upload(s3, "cts-out", f"replay/{job_id}/{name}", body)
    return JobInfo(id=job_id, outputs=(output,), image="example.org/replay",
                   image_digest="sha256:" + "cd" * 32, input_file_count=1,
                   output_file_count=1, completion_time=when(completion_time), user=USER,
                   namespace_prefix=PREFIX).for_importer()


@pytest.fixture(scope="module")
def replayed(stack, runner_env) -> dict:
    """Run the plan; return the table version after each step."""
    stack.s3.create_bucket("cts-out")
    s3 = stack.s3.client()
    new = job(s3, "job-new", NEW, "quality_report.tsv", report(("GCA_1", 90.0), ("GCA_2", 80.0)))
    old = job(s3, "job-old", OLD, "quality_report.tsv",
              report(("GCA_1", 50.0), ("GCA_2", 60.0), ("GCA_3", 40.0)))
    newest = job(s3, "job-newest", NEWEST, "quality_report.tsv",
                 report(("GCA_2", 80.0), ("GCA_3", 45.0)))
    stats_new = job(s3, "stats-new", NEW, "a.stats.tsv", stats(("contigs.fa", 120)))
    stats_old = job(s3, "stats-old", EARLIEST, "a.stats.tsv",
                    stats(("contigs.fa", 7), ("plasmids.fa", 3)))
    checkm2, declarative = "importers.checkm2", "importers.declarative"
    steps = [
        ("new", checkm2, new, CHECKM2_META, CHECKM2),
        ("old", checkm2, old, CHECKM2_META, CHECKM2),
        ("old_again", checkm2, old, CHECKM2_META, CHECKM2),
        ("new_again", checkm2, new, CHECKM2_META, CHECKM2),
        ("newest", checkm2, newest, CHECKM2_META, CHECKM2),
        ("legacy_new", declarative, stats_new, STATS_META, LEGACY),
        ("legacy_old", declarative, stats_old, STATS_META, LEGACY),
        ("snapshot_new", declarative, stats_new, SNAPSHOT_META, SNAPSHOT),
        ("snapshot_old", declarative, stats_old, SNAPSHOT_META, SNAPSHOT),
    ]
    plan = {"legacy_sql": LEGACY_SQL, "steps": steps, "checkm2": CHECKM2}
    done = run_python(f"import json\nPLAN = json.loads({json.dumps(plan)!r})\n" + SCRIPT,
                      runner_env, timeout=900)
    assert done.returncode == 0, done.stderr[-6000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(stack, name: str, version: int | None = None) -> DeltaTable:
    database, table_ = name.split(".")
    return DeltaTable(f"s3://{stack.lake_bucket}/warehouse/{database}.db/{table_}",
                      version=version, storage_options=stack.delta_storage_options())


def rows_at(stack, name: str, version: int, key: str, *columns: str) -> dict:
    """``{key value: (column values...)}`` of table ``name`` at ``version``."""
    delta = table(stack, name, version)
    return {r[key]: tuple(r[c] for c in columns) for r in delta.to_pyarrow_table().to_pylist()}


def metrics(stack, name: str, version: int) -> tuple[str, str, str]:
    """Operation, rows inserted and rows updated of commit ``version``."""
    [commit] = [c for c in table(stack, name).history() if c["version"] == version]
    counts = commit.get("operationMetrics", {})
    return (commit["operation"], str(counts.get("numTargetRowsInserted", "0")),
            str(counts.get("numTargetRowsUpdated", "0")))


def checkm2_rows(stack, version: int) -> dict:
    return rows_at(stack, CHECKM2, version, "genome_name", "completeness", "cts_job_id", AT)


def test_an_older_job_replayed_after_a_newer_one_only_adds_the_keys_it_lacks(stack, replayed):
    newer = {"GCA_1": (90.0, "job-new", when(NEW)), "GCA_2": (80.0, "job-new", when(NEW))}
    assert checkm2_rows(stack, replayed["new"]) == newer
    fields = {f.name: f.type.type for f in table(stack, CHECKM2).schema().fields}
    assert fields[AT] == "timestamp"

    # The older job is imported after the newer one: its GCA_1 and GCA_2 lose, GCA_3 is new.
    after_replay = {**newer, "GCA_3": (40.0, "job-old", when(OLD))}
    assert checkm2_rows(stack, replayed["old"]) == after_replay
    assert metrics(stack, CHECKM2, replayed["old"]) == ("MERGE", "1", "0")

    # Replayed again, it changes nothing; nor does the newer job imported a second time.
    for step in ("old_again", "new_again"):
        assert checkm2_rows(stack, replayed[step]) == after_replay, step
        operation, inserted, updated = metrics(stack, CHECKM2, replayed[step])
        assert (inserted, updated) == ("0", "0"), step


def test_a_newer_job_still_updates_rows_written_by_older_ones(stack, replayed):
    # GCA_3 (from job-old) takes the newest values; GCA_2 has the same values as job-new's
    # but is now the newest job's, so a replay of job-new could not pass the guard.
    assert checkm2_rows(stack, replayed["newest"]) == {
        "GCA_1": (90.0, "job-new", when(NEW)),
        "GCA_2": (80.0, "job-newest", when(NEWEST)),
        "GCA_3": (45.0, "job-newest", when(NEWEST))}
    assert metrics(stack, CHECKM2, replayed["newest"]) == ("MERGE", "0", "2")


def test_a_table_made_before_the_guard_gets_the_column_and_its_rows_count_as_oldest(
        stack, replayed):
    assert rows_at(stack, LEGACY, 1, "file", "num_seqs", "cts_job_id") == {
        "contigs.fa": (1, "job-legacy")}
    # The first guarded import adds the column, then updates the row that had no time.
    assert rows_at(stack, LEGACY, replayed["legacy_new"], "file", "num_seqs", AT) == {
        "contigs.fa": (120, when(NEW))}
    operations = [c["operation"] for c in table(stack, LEGACY).history()]
    assert operations[::-1][:4] == ["CREATE TABLE", "WRITE", "ADD COLUMNS", "MERGE"]
    # An older declarative job then only inserts what is missing.
    assert rows_at(stack, LEGACY, replayed["legacy_old"], "file", "num_seqs", AT) == {
        "contigs.fa": (120, when(NEW)), "plasmids.fa": (3, when(EARLIEST))}


def test_an_unguarded_table_takes_the_last_merge_and_cannot_be_mixed_with_guarded_ones(
        stack, replayed):
    assert rows_at(stack, SNAPSHOT, replayed["snapshot_old"], "file", "num_seqs",
                   "cts_job_id") == {"contigs.fa": (7, "stats-old"),
                                     "plasmids.fa": (3, "stats-old")}
    assert AT not in [f.name for f in table(stack, SNAPSHOT).schema().fields]

    assert replayed["unguarded_error"] == (
        f"merge into {CHECKM2}: the table has {AT}, so its rows are guarded by completion "
        "time; merge with guard=True")
    assert replayed["after_refusal"] == replayed["newest"]
