"""The example importer package's own tests, as its repository would hold them: the
shared helper's checks without Spark, and each importer tried by ``csep-sandbox`` (a
local Spark with Delta, the job's outputs served as ``s3a://`` paths, run twice to show
the import is idempotent)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import runner

PACKAGE = Path(__file__).resolve().parents[1] / "csep_example_importers"
sys.path.insert(0, str(PACKAGE.parent))

from csep_example_importers import lake  # noqa: E402

JOB = {"id": "job-1", "namespace_prefix": "u_someone__", "outputs": []}
STATS = ("file\tformat\ttype\tnum_seqs\tsum_len\tmin_len\tavg_len\tmax_len\n"
         "contigs.fa\tFASTA\tDNA\t120\t4500000\t500\t37500.5\t900000\n"
         "plasmids.fa\tFASTA\tDNA\t3\t60000\t5000\t20000.0\t40000\n")


def test_the_table_is_in_the_users_namespace():
    meta = {"database": "seqkit", "table": "stats"}
    assert lake.table_name(JOB, meta) == "u_someone__seqkit.stats"


@pytest.mark.parametrize("missing", ["database", "table"])
def test_a_missing_metadata_key_is_a_value_error_naming_it(missing):
    meta = {"database": "seqkit", "table": "stats"}
    del meta[missing]
    with pytest.raises(ValueError, match=f"importer_meta has no '{missing}'"):
        lake.table_name(JOB, meta)


def test_a_job_without_the_expected_output_is_a_value_error():
    with pytest.raises(ValueError, match="job job-1 has no output named stats.tsv"):
        lake.read_tsv(None, JOB, "stats.tsv", "file STRING")


def test_seqkit_stats_in_the_sandbox(tmp_path):
    stats = tmp_path / "stats.tsv"
    stats.write_text(STATS)
    # The sandbox of the runner this test imports (a development checkout included);
    # the package itself needs no PYTHONPATH: the sandbox finds it from the YAML's place.
    env = {**os.environ, "PYTHONPATH": str(Path(runner.__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "runner.sandbox",
                           str(PACKAGE / "seqkit_stats.yaml"), str(stats)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "u_sandbox__seqkit.stats" in done.stdout
    assert "idempotent: the second run left every table as the first run did" in done.stdout
    assert "contigs.fa" in done.stdout and "plasmids.fa" in done.stdout
