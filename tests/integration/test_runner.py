"""The runner as a process against the real stack: specs on S3, Spark, Delta, metastore.

The tests of this module share one spec store and run in order: the CheckM2 table made
by the first is merged into, replayed, and read back by the later ones. Failures that
must not start Spark run with a Spark master that cannot start: reaching Spark would
change their exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from contract import result as results
from contract.spec import EventRef, ImporterRef, JobInfo, JobSpec, Output, namespace_prefix, to_yaml
from contract.store import SpecStore
from importers.tables import COMPLETION_TIME_COLUMN
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_IMPORTERS = ROOT / "tests" / "fixtures" / "importers"
EXAMPLE_IMPORTERS = ROOT / "importers" / "examples"
CHECKM2_IMAGE = "ghcr.io/kbasetest/cdm_checkm2"
USER = "alice"
# Every job of this module completed at the same time: a later import of a genome wins.
COMPLETED = datetime.fromisoformat("2026-11-20T10:15:00.123000+00:00")

HEADER = ("Name\tCompleteness\tContamination\tCompleteness_Model_Used\tTranslation_Table_Used\t"
          "Coding_Density\tContig_N50\tAverage_Gene_Length\tGenome_Size\tGC_Content\t"
          "Total_Coding_Sequences\tAdditional_Notes\n")
REPORT_A = HEADER + (
    "GCA_1\t98.5\t0.6\tNeural Network (Specific Model)\t11\t0.89\t120000\t"
    "310.5\t4500000\t0.52\t4100\tNone\n"
    "GCA_2\t75.0\t3.25\tGradient Boost (General Model)\t11\t0.85\t50000\t"
    "290.0\t3000000\t0.61\t2900\t\n")
REPORT_B = HEADER + (
    "GCA_2\t80.0\t3.25\tGradient Boost (General Model)\t11\t0.85\t50000\t"
    "290.0\t3000000\t0.61\t2900\t\n"
    "GCA_3\t51.0\t10.0\tGradient Boost (General Model)\t4\t0.91\t8000\t"
    "250.25\t1200000\t0.33\t1100\tLow quality\n")
REPORT_BAD = HEADER + (
    "GCA_9\t98.5\t0.6\tNeural Network (Specific Model)\t11\t0.89\t120000\t"
    "310.5\t4500000\t0.52\t4100\t\n"
    "GCA_10\tabc\t0.6\tNeural Network (Specific Model)\t11\t0.89\t120000\t"
    "310.5\t4500000\t0.52\t4100\t\n")


def _row(name, completeness, contamination, model, table, density, n50, gene_length, size, gc,
         coding, notes, job):
    return {"genome_name": name, "completeness": completeness, "contamination": contamination,
            "completeness_model_used": model, "translation_table_used": table,
            "coding_density": density, "contig_n50": n50, "average_gene_length": gene_length,
            "genome_size": size, "gc_content": gc, "total_coding_sequences": coding,
            "additional_notes": notes, "cts_job_id": job, COMPLETION_TIME_COLUMN: COMPLETED}


MERGED_ROWS = [
    _row("GCA_1", 98.5, 0.6, "Neural Network (Specific Model)", 11, 0.89, 120000, 310.5,
         4500000, 0.52, 4100, "None", "job-a"),
    _row("GCA_2", 80.0, 3.25, "Gradient Boost (General Model)", 11, 0.85, 50000, 290.0,
         3000000, 0.61, 2900, None, "job-b"),
    _row("GCA_3", 51.0, 10.0, "Gradient Boost (General Model)", 4, 0.91, 8000, 250.25,
         1200000, 0.33, 1100, "Low quality", "job-b"),
]

SEED_ONLY_MODULE = '''
"""Written from the importer contract alone: read the TSV with Spark, MERGE with delta-spark."""
from delta.tables import DeltaTable
from pyspark.sql import functions as F


def run_import(get_spark, job_info, metadata):
    spark = get_spark(executor_cores=1)
    table = metadata["deltatable"]
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {table.split('.')[0]}")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {table} "
              "(sample STRING, reads BIGINT, cts_job_id STRING) USING DELTA")
    for output in job_info["outputs"]:
        frame = (spark.read.csv("s3a://" + output["file"], sep="\\t", header=True,
                                schema="sample STRING, reads BIGINT")
                 .withColumn("cts_job_id", F.lit(job_info["id"])))
        (DeltaTable.forName(spark, table).alias("t")
         .merge(frame.alias("s"), "t.sample = s.sample")
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
'''

SEED_ONLY_YAML = '''
name: read counts
py_module: read_counts_importer
image: example.org/someone/read-counter
importer_meta:
  deltatable: seed_example.read_counts
'''

# The same module registered for a second image, whose table is in the job user's namespace
# (so the runner's result lists its commits); its runners are Spark Connect clients.
SEED_ONLY_CONNECT_YAML = f'''
name: read counts over connect
py_module: read_counts_importer
image: example.org/someone/read-counter-connect
importer_meta:
  deltatable: {namespace_prefix(USER)}seed_connect.read_counts
'''

SEQKIT_STATS = (
    "file\tformat\ttype\tnum_seqs\tsum_len\tmin_len\tavg_len\tmax_len\n"
    "contigs.fa\tFASTA\tDNA\t120\t4500000\t500\t37500.5\t900000\n"
    "plasmids.fa\tFASTA\tDNA\t3\t60000\t5000\t20000.0\t40000\n")


@pytest.fixture(scope="module")
def store(stack, s3):
    return SpecStore(f"s3://{stack.lake_bucket}/event-specs", s3)


@pytest.fixture(scope="module")
def env(runner_env, tmp_path_factory):
    """The runner's environment: the stack, plus the test, example and seed-only importers."""
    seed_dir = tmp_path_factory.mktemp("seed-only-importer")
    (seed_dir / "read_counts_importer.py").write_text(SEED_ONLY_MODULE)
    (seed_dir / "read_counts.yaml").write_text(SEED_ONLY_YAML)
    (seed_dir / "read_counts_connect.yaml").write_text(SEED_ONLY_CONNECT_YAML)
    dirs = os.pathsep.join(map(str, ["@builtin", FIXTURE_IMPORTERS, EXAMPLE_IMPORTERS, seed_dir]))
    return {**runner_env, "CSEP_IMPORTER_DIRS": dirs}


@pytest.fixture(scope="module")
def no_spark_env(env):
    """``env`` with a Spark master that fails if anything tries to start Spark."""
    return {**env, "CSEP_SPARK_MASTER": "no-such-master://spark-must-not-start"}


def upload(s3, bucket: str, key: str, body: str) -> Output:
    """Put an output object with its CRC64NVME checksum, as the CTS does."""
    response = s3.put_object(Bucket=bucket, Key=key, Body=body.encode(),
                             ChecksumAlgorithm="CRC64NVME")
    return Output(file=f"{bucket}/{key}", crc64nvme=response["ChecksumCRC64NVME"])


def make_spec(job_id: str, image: str, importer: str, py_module: str,
              outputs: list[Output], meta: dict | None = None, user: str = USER) -> JobSpec:
    return JobSpec(
        job=JobInfo(id=job_id, outputs=tuple(outputs), image=image,
                    image_digest="sha256:" + "ab" * 32, input_file_count=1,
                    output_file_count=len(outputs),
                    completion_time=COMPLETED, user=user,
                    namespace_prefix=namespace_prefix(user)),
        importer=ImporterRef(name=importer, py_module=py_module, importer_meta=meta or {}),
        event=EventRef(topic="cts-jobs", partition=0, offset=7, trans_id=f"t-{job_id}",
                       time=datetime.fromisoformat("2026-11-20T10:15:00.123000+00:00")),
        args=("--threads", "4"))


def checkm2_spec(job_id: str, outputs: list[Output], user: str = USER) -> JobSpec:
    return make_spec(job_id, CHECKM2_IMAGE, "checkm2", "importers.checkm2", outputs,
                     {"database": "checkm2", "table": "quality_report"}, user=user)


def run_runner(spec: str, env: dict[str, str], stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "runner", spec], env=env, input=stdin,
                          capture_output=True, text=True, timeout=600)


def run_spec(store: SpecStore, spec: JobSpec, env: dict[str, str], expected_exit: int):
    """Put ``spec`` on S3, run it, check the exit code; return the newest result."""
    uri = store.put_spec(spec)
    done = run_runner(uri, env)
    assert done.returncode == expected_exit, done.stderr[-6000:]
    return store.results(uri)[-1]


def run_at_once(uris: list[str], env: dict[str, str],
                timeout: float) -> list[tuple[int, str]]:
    """Start a runner for each spec at once; (exit code, stderr) of each once all ended."""
    runners = [subprocess.Popen([sys.executable, "-m", "runner", uri], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for uri in uris]
    outcomes = [(runner.wait(timeout=timeout), runner.stderr.read()) for runner in runners]
    for runner in runners:
        runner.stdout.close()
        runner.stderr.close()
    return outcomes


def delta_rows(stack, database: str, table: str, order_by: str) -> list[dict]:
    """The table's rows read by delta-rs, without Spark or the metastore."""
    return sorted(stack.delta_rows(f"{database}.db/{table}"), key=lambda r: r[order_by])


CHECKM2_DB = f"{namespace_prefix(USER)}checkm2"


@pytest.fixture(scope="module")
def checkm2_jobs(s3, store, env):
    """Two CheckM2 jobs imported in turn (job-a creates the table, job-b merges into it),
    once for the module: the tests that read the table or the audit use them."""
    report_a = upload(s3, "cts-out", "job-a/quality_report.tsv", REPORT_A)
    first = run_spec(store, checkm2_spec("job-a", [report_a]), env, 0)
    report_b = upload(s3, "cts-out", "job-b/quality_report.tsv", REPORT_B)
    other = upload(s3, "cts-out", "job-b/checkm2.log", "not a report\n")
    second = run_spec(store, checkm2_spec("job-b", [other, report_b]), env, 0)
    return first, second


def test_checkm2_job_creates_the_table_and_a_second_job_merges(stack, checkm2_jobs):
    first, second = checkm2_jobs
    assert first.status == results.Status.SUCCEEDED
    assert [(c.table, c.operation) for c in first.delta_commits] == [
        (f"{CHECKM2_DB}.quality_report", "CREATE TABLE"),
        (f"{CHECKM2_DB}.quality_report", "MERGE")]
    assert first.delta_commits[1].metrics["numTargetRowsInserted"] == "2"

    assert second.status == results.Status.SUCCEEDED
    assert [(c.table, c.operation) for c in second.delta_commits] == [
        (f"{CHECKM2_DB}.quality_report", "MERGE")]
    metrics = second.delta_commits[0].metrics
    assert (metrics["numTargetRowsInserted"], metrics["numTargetRowsUpdated"]) == ("1", "1")

    assert delta_rows(stack, CHECKM2_DB, "quality_report", "genome_name") == MERGED_ROWS


def test_replaying_a_spec_leaves_the_rows_unchanged(stack, store, env, checkm2_jobs):
    uri = store.spec_uri("job-b", "t-job-b")
    before = len(store.result_uris(uri))
    for _ in range(3):
        done = run_runner(uri, env)
        assert done.returncode == 0, done.stderr[-6000:]
    replays = store.results(uri)[-3:]
    assert [r.status for r in replays] == [results.Status.SUCCEEDED] * 3
    for replay in replays:
        for commit in replay.delta_commits:
            assert commit.metrics.get("numTargetRowsInserted", "0") == "0"
            assert commit.metrics.get("numTargetRowsUpdated", "0") == "0"
    assert len(store.result_uris(uri)) == before + 3  # one result per run by hand
    assert delta_rows(stack, CHECKM2_DB, "quality_report", "genome_name") == MERGED_ROWS


def test_an_importer_written_from_seed_001_alone_runs_unchanged(stack, s3, store, env):
    counts = upload(s3, "cts-out", "job-seed/counts.tsv",
                    "sample\treads\ns1\t1500\ns2\t42\n")
    spec = make_spec("job-seed", "example.org/someone/read-counter", "read counts",
                     "read_counts_importer", [counts],
                     {"deltatable": "seed_example.read_counts"})
    outcome = run_spec(store, spec, env, 0)
    assert outcome.status == results.Status.SUCCEEDED
    assert delta_rows(stack, "seed_example", "read_counts", "sample") == [
        {"sample": "s1", "reads": 1500, "cts_job_id": "job-seed"},
        {"sample": "s2", "reads": 42, "cts_job_id": "job-seed"}]


def test_the_seed_001_importer_merges_through_a_spark_connect_runner(stack, spark_connect, s3,
                                                                     store, env):
    """The same importer, unchanged, in a runner that is a client of the stack's Spark
    Connect server: its ``DeltaTable.forName(...).merge(...)`` runs on the server through
    Delta's Connect plug-in. A second run of the spec inserts nothing and leaves the rows
    as they were."""
    connect_env = {**env, "CSEP_SPARK_MASTER": spark_connect.url}
    database = f"{namespace_prefix(USER)}seed_connect"
    counts = upload(s3, "cts-out", "job-seed-connect/counts.tsv",
                    "sample\treads\ns1\t1500\ns2\t42\ns3\t7\n")
    spec = make_spec("job-seed-connect", "example.org/someone/read-counter-connect",
                     "read counts over connect", "read_counts_importer", [counts],
                     {"deltatable": f"{database}.read_counts"})
    expected = [{"sample": s, "reads": n, "cts_job_id": "job-seed-connect"}
                for s, n in (("s1", 1500), ("s2", 42), ("s3", 7))]

    first = run_spec(store, spec, connect_env, 0)
    assert first.status == results.Status.SUCCEEDED
    assert [c.operation for c in first.delta_commits] == ["CREATE TABLE", "MERGE"]
    assert first.delta_commits[1].metrics["numTargetRowsInserted"] == "3"
    assert delta_rows(stack, database, "read_counts", "sample") == expected

    uri = store.spec_uri("job-seed-connect", "t-job-seed-connect")
    again = run_runner(uri, connect_env)
    assert again.returncode == 0, again.stderr[-6000:]
    replay = store.results(uri)[-1]
    assert replay.status == results.Status.SUCCEEDED
    assert [c.operation for c in replay.delta_commits] == ["MERGE"]
    metrics = replay.delta_commits[0].metrics
    assert (metrics["numTargetRowsInserted"], metrics["numTargetRowsDeleted"]) == ("0", "0")
    assert delta_rows(stack, database, "read_counts", "sample") == expected


def test_runners_merging_into_one_table_at_once_all_commit(stack, spark_connect, store, env):
    """Three runners start together, each MERGEing one row into the same table while
    holding its transaction open for 3 s (a source computed by ``Thread.sleep``). Delta
    lets one commit and fails the others with a write conflict; each of those runs its
    importer again and commits. All three succeed, with one MERGE each."""
    connect_env = {**env, "CSEP_SPARK_MASTER": spark_connect.url}

    def slow_merge(job_id: str) -> JobSpec:
        return make_spec(job_id, "example.org/csep-tests/slow-merge", "slow_merge",
                         "csep_test_slow_merge", [], {"hold_seconds": 3})

    # The table exists before the race, so the three only race to MERGE.
    warm = run_spec(store, slow_merge("job-conflict-warm"), connect_env, 0)
    assert [c.operation for c in warm.delta_commits][-1] == "MERGE"

    uris = [store.put_spec(slow_merge(f"job-conflict-{n}")) for n in range(3)]
    outcomes = run_at_once(uris, connect_env, timeout=300)

    assert [code for code, _ in outcomes] == [0, 0, 0], [err[-3000:] for _, err in outcomes]
    reran = [err for _, err in outcomes if "Delta write conflict in run 1" in err]
    assert len(reran) >= 1, [err[-3000:] for _, err in outcomes]
    for uri in uris:
        result = store.results(uri)[-1]
        assert result.status == results.Status.SUCCEEDED
        assert [c.operation for c in result.delta_commits] == ["MERGE"]
    rows = delta_rows(stack, f"{namespace_prefix(USER)}conflicts", "rows", "cts_job_id")
    assert [r["cts_job_id"] for r in rows] == [
        "job-conflict-0", "job-conflict-1", "job-conflict-2", "job-conflict-warm"]


def test_an_output_named_like_a_glob_is_read_as_named(stack, spark_connect, s3, env):
    """``job-glob[1]/quality_report.tsv`` is that file, not a pattern matching
    ``job-glob1/quality_report.tsv`` (which holds another report)."""
    connect_env = {**env, "CSEP_SPARK_MASTER": spark_connect.url}
    # A store of its own: the audit test counts the CheckM2 specs of the module's.
    store = SpecStore(f"s3://{stack.lake_bucket}/glob-specs", s3)
    named = upload(s3, "cts-out", "job-glob[1]/quality_report.tsv", REPORT_A)
    upload(s3, "cts-out", "job-glob1/quality_report.tsv", REPORT_B)
    result = run_spec(store, checkm2_spec("job-glob", [named], user="globber"), connect_env, 0)
    assert result.status == results.Status.SUCCEEDED
    rows = delta_rows(stack, f"{namespace_prefix('globber')}checkm2", "quality_report",
                      "genome_name")
    assert [(r["genome_name"], r["completeness"]) for r in rows] == [
        ("GCA_1", 98.5), ("GCA_2", 75.0)]


@pytest.fixture(scope="module")
def seqkit_job(s3, store, env):
    """A SeqKit stats job imported by the declarative importer, once for the module."""
    stats = upload(s3, "cts-out", "job-seqkit/assembly.stats.tsv", SEQKIT_STATS)
    spec = make_spec("job-seqkit", "ghcr.io/kbasetest/cdm_seqkit", "seqkit_stats",
                     "importers.declarative", [stats], _example_meta())
    return run_spec(store, spec, env, 0)


def test_the_declarative_importer_loads_typed_columns(stack, seqkit_job):
    outcome = seqkit_job
    assert [c.operation for c in outcome.delta_commits] == ["CREATE TABLE", "MERGE"]

    database = f"{namespace_prefix(USER)}seqkit"
    location = f"s3://{stack.lake_bucket}/warehouse/{database}.db/stats"
    fields = DeltaTable(location, storage_options=stack.delta_storage_options()).schema().fields
    assert {f.name: (f.type.type, f.nullable) for f in fields} == {
        "file": ("string", False), "format": ("string", True), "type": ("string", True),
        "num_seqs": ("long", True), "sum_len": ("long", True), "min_len": ("long", True),
        "avg_len": ("double", True), "max_len": ("long", True),
        "cts_job_id": ("string", False), COMPLETION_TIME_COLUMN: ("timestamp", False)}
    assert delta_rows(stack, database, "stats", "file") == [
        {"file": "contigs.fa", "format": "FASTA", "type": "DNA", "num_seqs": 120,
         "sum_len": 4500000, "min_len": 500, "avg_len": 37500.5, "max_len": 900000,
         "cts_job_id": "job-seqkit", COMPLETION_TIME_COLUMN: COMPLETED},
        {"file": "plasmids.fa", "format": "FASTA", "type": "DNA", "num_seqs": 3,
         "sum_len": 60000, "min_len": 5000, "avg_len": 20000.0, "max_len": 40000,
         "cts_job_id": "job-seqkit", COMPLETION_TIME_COLUMN: COMPLETED}]


def test_tables_are_readable_by_name_through_spark(stack, runner_env, checkm2_jobs,
                                                   seqkit_job):
    read = run_python(textwrap.dedent(f"""
        import json
        from pyspark.sql import functions as F
        from runner.spark import SparkSettings, spark_factory
        spark = spark_factory(SparkSettings.from_env())()
        # The completion time as epoch microseconds: the same instant in any session zone.
        checkm2 = [r.asDict() for r in spark.sql(
            "SELECT * FROM {CHECKM2_DB}.quality_report ORDER BY genome_name").withColumn(
            "{COMPLETION_TIME_COLUMN}", F.unix_micros("{COMPLETION_TIME_COLUMN}")).collect()]
        seqkit = spark.sql("SELECT file, num_seqs FROM {namespace_prefix(USER)}seqkit.stats "
                           "ORDER BY file").collect()
        print(json.dumps({{"checkm2": checkm2, "seqkit": [list(r) for r in seqkit]}}))
        spark.stop()
        """), runner_env)
    assert read.returncode == 0, read.stderr[-4000:]
    tables = json.loads(read.stdout.strip().splitlines()[-1])
    micros = (COMPLETED - datetime.fromtimestamp(0, UTC)) // timedelta(microseconds=1)
    assert tables["checkm2"] == [{**row, COMPLETION_TIME_COLUMN: micros} for row in MERGED_ROWS]
    assert tables["seqkit"] == [["contigs.fa", 120], ["plasmids.fa", 3]]


def test_an_uncoercible_value_fails_naming_row_and_column(s3, store, env):
    report = upload(s3, "cts-out", "job-bad/quality_report.tsv", REPORT_BAD)
    outcome = run_spec(store, checkm2_spec("job-bad", [report]), env, 65)
    assert outcome.status == results.Status.BAD_DATA
    assert outcome.error_type == "BadDataError"
    assert ("cts-out/job-bad/quality_report.tsv: row 2 (line 3), column 'Completeness': "
            "'abc' is not a valid double") in outcome.message
    assert outcome.delta_commits == ()


def test_a_report_repeating_a_genome_fails_as_bad_data_and_changes_nothing(stack, s3, store,
                                                                            env, checkm2_jobs):
    line = REPORT_A.splitlines(keepends=True)[1]
    report = upload(s3, "cts-out", "job-twice/quality_report.tsv", HEADER + line + line)
    outcome = run_spec(store, checkm2_spec("job-twice", [report]), env, 65)
    assert outcome.status == results.Status.BAD_DATA
    assert outcome.error_type == "BadDataError"
    assert (f"merge into {CHECKM2_DB}.quality_report: 2 rows share the merge key "
            "{'genome_name': 'GCA_1'}") in outcome.message
    assert outcome.delta_commits == ()
    assert delta_rows(stack, CHECKM2_DB, "quality_report", "genome_name") == MERGED_ROWS


def test_a_malformed_spec_exits_64(s3, store, no_spark_env):
    uri = store.spec_uri("job-malformed", "t-1")
    store.write_text(uri, "job: {id: job-malformed, outputs: []}\nimporter: 3\n")
    done = run_runner(uri, no_spark_env)
    assert done.returncode == 64, done.stderr[-4000:]
    [outcome] = store.results(uri)
    assert outcome.status == results.Status.BAD_SPEC
    assert "invalid spec" in outcome.message and "importer" in outcome.message


def test_a_spec_naming_another_module_for_its_image_exits_64(s3, store, no_spark_env):
    report = upload(s3, "cts-out", "job-evil/quality_report.tsv", REPORT_A)
    spec = make_spec("job-evil", CHECKM2_IMAGE, "checkm2", "csep_test_failures", [report])
    outcome = run_spec(store, spec, no_spark_env, 64)
    assert outcome.status == results.Status.BAD_SPEC
    assert "importers.checkm2" in outcome.message and "csep_test_failures" in outcome.message


def test_a_checksum_mismatch_exits_65(s3, store, no_spark_env):
    report = upload(s3, "cts-out", "job-changed/quality_report.tsv", REPORT_A)
    s3.put_object(Bucket="cts-out", Key="job-changed/quality_report.tsv",
                  Body=REPORT_B.encode(), ChecksumAlgorithm="CRC64NVME")
    outcome = run_spec(store, checkm2_spec("job-changed", [report]), no_spark_env, 65)
    assert outcome.status == results.Status.BAD_DATA
    assert "cts-out/job-changed/quality_report.tsv" in outcome.message
    assert report.crc64nvme in outcome.message


def test_a_missing_output_exits_65(store, no_spark_env):
    missing = Output(file="cts-out/job-gone/quality_report.tsv", crc64nvme="4ekt2WB1KO4=")
    outcome = run_spec(store, checkm2_spec("job-gone", [missing]), no_spark_env, 65)
    assert outcome.status == results.Status.BAD_DATA
    assert "s3://cts-out/job-gone/quality_report.tsv does not exist" in outcome.message


def test_an_importer_temporary_failure_exits_75(s3, store, no_spark_env):
    out = upload(s3, "cts-out", "job-temp/out.txt", "x")
    spec = make_spec("job-temp", "example.org/csep-tests/failing-temporary",
                     "failing_temporary", "csep_test_failures", [out], {"failure": "temporary"})
    outcome = run_spec(store, spec, no_spark_env, 75)
    assert outcome.status == results.Status.TEMPORARY_FAILURE
    assert outcome.message == "job job-temp: the upstream service is unavailable"
    assert "TemporaryFailure" in outcome.traceback


def test_an_importer_bug_exits_70(s3, store, no_spark_env):
    out = upload(s3, "cts-out", "job-bug/out.txt", "x")
    spec = make_spec("job-bug", "example.org/csep-tests/failing-bug", "failing_bug",
                     "csep_test_failures", [out], {"failure": "bug"})
    outcome = run_spec(store, spec, no_spark_env, 70)
    assert (outcome.status, outcome.error_type) == (results.Status.FAILED, "ZeroDivisionError")
    assert "csep_test_failures.py" in outcome.traceback


def test_a_local_spec_file_and_stdin(tmp_path, s3, no_spark_env):
    out = upload(s3, "cts-out", "job-local/out.txt", "x")
    text = to_yaml(make_spec("job-local", "example.org/csep-tests/failing-temporary",
                             "failing_temporary", "csep_test_failures", [out]))
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(text)
    done = run_runner(str(spec_file), no_spark_env)
    assert done.returncode == 75, done.stderr[-4000:]
    [written] = tmp_path.glob("result-*.yaml")
    assert results.from_yaml(written.read_text()).spec_uri == str(spec_file)

    piped = run_runner("-", no_spark_env, stdin=text)
    assert piped.returncode == 75, piped.stderr[-4000:]
    assert results.from_yaml(piped.stdout).status == results.Status.TEMPORARY_FAILURE
    logged = [json.loads(line) for line in piped.stderr.splitlines() if line.startswith("{")]
    assert logged and all(line["job_id"] in (None, "job-local") for line in logged)
    assert any(line["job_id"] == "job-local" for line in logged)


def test_audit_lists_and_shows_specs_and_results(stack, store, env, no_spark_env,
                                                 checkm2_jobs):
    missing = Output(file="cts-out/job-audit-gone/quality_report.tsv", crc64nvme="4ekt2WB1KO4=")
    run_spec(store, checkm2_spec("job-audit-gone", [missing]), no_spark_env, 65)
    audit_env = {**env, "CSEP_SPEC_STORE": store.base}

    def audit(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "runner.audit", *args], env=audit_env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # Other tests of the module may have run job-b again (a replay) or written other
    # specs: what the store holds is what the audit must list.
    job_b = store.spec_uri("job-b", "t-job-b")
    [line] = audit("list", "--job-id", "job-b").splitlines()
    uri, job, image, attempts, status, code, _ = line.split("\t")
    assert (uri, job, image, attempts, status, code) == (
        job_b, "job-b", CHECKM2_IMAGE, str(len(store.result_uris(job_b))), "succeeded", "0")

    bad_data = [line.split("\t") for line in audit("list", "--status", "bad_data").splitlines()]
    assert "job-audit-gone" in {fields[1] for fields in bad_data}
    for fields in bad_data:
        assert store.results(fields[0])[-1].status == results.Status.BAD_DATA
    by_image = audit("list", "--image", CHECKM2_IMAGE + ":0.3.0").splitlines()
    assert {line.split("\t")[2] for line in by_image} == {CHECKM2_IMAGE}
    assert {"job-a", "job-b", "job-audit-gone"} <= {line.split("\t")[1] for line in by_image}

    shown = audit("show", store.spec_uri("job-a", "t-job-a")).split("---\n")
    assert len(shown) == 2
    assert "id: job-a" in shown[0] and "status: succeeded" in shown[1]


def test_no_credential_in_any_spec_or_result(stack, s3, store, checkm2_jobs):
    keys = store._keys(store.prefix)
    assert len(keys) >= 4  # at least the two CheckM2 jobs' specs and results
    for key in keys:
        text = s3.get_object(Bucket=store.bucket, Key=key)["Body"].read().decode()
        for secret in stack.secrets():
            assert secret not in text, f"a credential is in s3://{store.bucket}/{key}"


def _example_meta() -> dict:
    return yaml.safe_load((EXAMPLE_IMPORTERS / "seqkit_stats.yaml").read_text())["importer_meta"]
