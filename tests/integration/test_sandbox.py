"""The importer author's sandbox as a process: a local Spark with Delta (or Iceberg), no
servers.

Each Spark run costs a JVM (half a minute or more), so each test is one process checked
for everything it shows; the importer that fails never starts Spark. The Iceberg test runs
three sandboxes in one process, one JVM.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from awscrt import checksums

from common.process import die_with_parent
from stack import jars
from stack.local import subprocess_env
from stack.samples import HERE as SAMPLES
from stack.samples import report_genomes

ROOT = Path(__file__).resolve().parents[2]
CHECKM2_YAML = ROOT / "importers" / "checkm2.yaml"
APPENDING_YAML = ROOT / "tests" / "fixtures" / "sandbox_importers" / "appending.yaml"
FAILING_YAML = ROOT / "tests" / "fixtures" / "importers" / "failing_bug.yaml"
ICEBERG_CHECKM2_YAML = ROOT / "tests" / "fixtures" / "iceberg_importers" / "iceberg_checkm2.yaml"


def _sandbox(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess:
    # The sandbox dies with the test run, and its JVM with it (pyspark's gateway exits when
    # its parent's pipe closes).
    return subprocess.run([sys.executable, "-m", "runner.sandbox", *map(str, args)],
                          cwd=cwd, env=subprocess_env({}), capture_output=True, text=True,
                          timeout=600, preexec_fn=die_with_parent)


def _report(tmp_path: Path) -> Path:
    """The sample CheckM2 report under the name the importer looks for."""
    report = tmp_path / "inputs" / "quality_report.tsv"
    report.parent.mkdir()
    report.write_bytes((SAMPLES / "checkm2" / "quality_report.tsv").read_bytes())
    return report


def _job_info(stdout: str) -> dict:
    return json.loads(re.search(r"^job_info: (.*)$", stdout, re.MULTILINE).group(1))


def _warehouse(stdout: str) -> Path:
    return Path(re.search(r"^warehouse: (\S+)", stdout, re.MULTILINE).group(1))


def _shown_rows(stdout: str) -> list[dict[str, str]]:
    """The rows of the first table Spark's show() printed, by column name."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
            for line in lines[1:]]


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_checkm2_sample_is_imported_and_idempotent(tmp_path):
    report = _report(tmp_path)
    done = _sandbox(tmp_path, CHECKM2_YAML, report)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout

    job = _job_info(out)
    crc = checksums.crc64nvme(report.read_bytes())
    assert job["outputs"] == [{"file": f"sandbox/{job['id']}/quality_report.tsv",
                               "crc64nvme": base64.b64encode(crc.to_bytes(8, "big")).decode()}]
    assert (job["user"], job["namespace_prefix"]) == ("sandbox", "u_sandbox__")
    assert job["image"] == "ghcr.io/kbasetest/cdm_checkm2"
    assert job["output_file_count"] == 1

    assert "first run succeeded; it touched 1 table(s)" in out
    assert "table u_sandbox__checkm2.quality_report\n" in out
    assert "Delta version 1 (this run: v0 CREATE TABLE, v1 MERGE)" in out
    assert "    genome_name: string not null\n" in out
    assert "    contig_n50: bigint\n" in out
    assert "  rows: 3\n" in out
    rows = {row["genome_name"]: row for row in _shown_rows(out)}
    assert sorted(rows) == sorted(report_genomes())
    assert {row["cts_job_id"] for row in rows.values()} == {job["id"]}
    low = rows["GCA_900111795.1"]
    assert (low["completeness"], low["contig_n50"], low["additional_notes"]) == (
        "62.4", "18422", "Low completeness")

    # The second MERGE commits a version of its own, but changes no row.
    assert "  u_sandbox__checkm2.quality_report: v2 MERGE" in out
    assert _last_line(out) == "idempotent: the second run left every table as the first run did"
    assert not _warehouse(out).exists()
    # Nothing of Spark, Derby or Hive lands in the working directory.
    assert [p.name for p in tmp_path.iterdir()] == ["inputs"]


def test_appending_importer_is_not_idempotent(tmp_path):
    report = _report(tmp_path)
    warehouse = tmp_path / "warehouse"
    done = _sandbox(tmp_path, APPENDING_YAML, report, "--warehouse", warehouse)
    assert done.returncode == 1, done.stderr[-3000:]
    assert _last_line(done.stderr) == (
        "sandbox: not idempotent: the second run changed "
        "u_sandbox__sandbox_tests.lines: 4 -> 8 rows")
    out = done.stdout
    # The first run read the report through s3a:// and wrote its 4 lines.
    assert "table u_sandbox__sandbox_tests.lines\n" in out
    assert "  rows: 4\n" in out
    assert "NOT IDEMPOTENT" in out
    # --warehouse is kept: the tables, the metastore and the job's outputs as bucket/key.
    job = _job_info(out)
    staged = warehouse / "s3" / job["outputs"][0]["file"]
    assert staged.read_bytes() == report.read_bytes()
    assert (warehouse / "tables" / "u_sandbox__sandbox_tests.db" / "lines" / "_delta_log").is_dir()
    assert (warehouse / "metastore_db").is_dir()


def test_failing_importer_exits_with_the_runners_code(tmp_path):
    # This importer raises before asking for Spark: no JVM.
    done = _sandbox(tmp_path, FAILING_YAML, SAMPLES / "checkm2" / "quality_report.tsv", "--keep")
    job = _job_info(done.stdout)
    assert done.returncode == 70
    assert _last_line(done.stderr) == (
        f"sandbox: the first run failed: failed (exit 70): ZeroDivisionError: "
        f"job {job['id']}: a bug in the importer")
    assert "Traceback (most recent call last)" in done.stderr
    assert "first run succeeded" not in done.stdout
    kept = _warehouse(done.stdout)
    try:
        assert (kept / "s3" / job["outputs"][0]["file"]).is_file()
    finally:
        shutil.rmtree(kept)


# Several sandboxes in one process: each one's Spark session stops at its end, and the next
# one's starts on the same JVM. Their outputs are told apart by the separators.
SANDBOXES = """
import json, sys
from runner.sandbox import main
for argv in json.loads(sys.argv[1]):
    print("=== sandbox", flush=True)
    print("=== sandbox", file=sys.stderr, flush=True)
    print("=== exit", main(argv), flush=True)
"""


def _sandboxes(cwd: Path, *runs: list[str | Path]) -> list[tuple[int, str, str]]:
    """Exit status, stdout and stderr of each sandbox run (its arguments) in one process."""
    argv = json.dumps([[str(a) for a in run] for run in runs])
    env = subprocess_env({"CSEP_ICEBERG_JARS": str(jars.ensure("iceberg"))})
    done = subprocess.run([sys.executable, "-c", SANDBOXES, argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900,
                          preexec_fn=die_with_parent)
    assert done.returncode == 0, done.stderr[-3000:]
    outs = done.stdout.split("=== sandbox\n")[1:]
    errs = done.stderr.split("=== sandbox\n")[1:]
    assert len(outs) == len(errs) == len(runs), done.stderr[-3000:]
    results = []
    for out, err in zip(outs, errs, strict=True):
        body, status = out.rsplit("=== exit ", 1)
        results.append((int(status), body, err))
    return results


def _iceberg_table(warehouse: Path, name: str):
    """The table ``namespace.table`` of the sandbox's Hadoop catalog, read by pyiceberg
    from its latest metadata file (no Spark)."""
    from pyiceberg.table import StaticTable

    metadata = warehouse / "iceberg" / Path(*name.split(".")) / "metadata"
    version = (metadata / "version-hint.text").read_text().strip()
    return StaticTable.from_metadata((metadata / f"v{version}.metadata.json").as_uri())


def _listed_snapshots(text: str) -> list[tuple[int, str, str, str]]:
    """The snapshots the sandbox reported: id, operation, added and deleted records."""
    return [(int(i), op, added, deleted) for i, op, added, deleted in re.findall(
        r"snapshot (\d+) (\w+) \(\+(\d+) -(\d+) records\)", text)]


def _check_snapshots(table, out: str) -> None:
    """Each run's reported snapshots are the table's, in order, as pyiceberg reads them,
    each bearing a marker of the sandbox's, one marker per run."""
    first, second = out.split("second run of the same job:")
    made_first = _listed_snapshots(first.split("(this run: ", 1)[1])
    made_second = _listed_snapshots(second)
    snapshots = table.snapshots()
    assert made_first and made_second
    assert made_first + made_second == [
        (s.snapshot_id, s.summary.operation.value, s.summary.get("added-records") or "0",
         s.summary.get("deleted-records") or "0") for s in snapshots]
    markers = [s.summary["csep-attempt"] for s in snapshots]
    assert all(m.startswith("csep-sandbox:") for m in markers)
    assert len(set(markers[:len(made_first)])) == len(set(markers[len(made_first):])) == 1
    assert markers[0] != markers[-1]
    # After the first run the table was at its last snapshot; now at the second run's.
    assert f"Iceberg snapshot {made_first[-1][0]} (this run: " in first
    assert table.metadata.current_snapshot_id == snapshots[-1].snapshot_id


def test_importers_run_on_a_local_iceberg_catalog_and_are_checked_for_idempotence(tmp_path):
    report = _report(tmp_path)
    builtin, style, appending = (tmp_path / name for name in ("builtin", "style", "appending"))
    runs = _sandboxes(tmp_path,
                      [CHECKM2_YAML, report, "--format", "iceberg", "--warehouse", builtin],
                      [ICEBERG_CHECKM2_YAML, report, "--format", "iceberg", "--warehouse", style],
                      [APPENDING_YAML, report, "--format", "iceberg", "--warehouse", appending])

    # The built-in CheckM2 importer: the helper library makes an Iceberg table.
    status, out, err = runs[0]
    assert status == 0, err[-3000:]
    job = _job_info(out)
    assert (job["user"], job["namespace_prefix"]) == ("sandbox", "")
    assert "first run succeeded; it touched 1 table(s)" in out
    assert "table checkm2.quality_report\n" in out
    assert "  rows: 3\n" in out
    assert _last_line(out) == "idempotent: the second run left every table as the first run did"
    table = _iceberg_table(builtin, "checkm2.quality_report")
    rows = {row["genome_name"]: row for row in table.scan().to_arrow().to_pylist()}
    assert sorted(rows) == sorted(report_genomes())
    assert {row["cts_job_id"] for row in rows.values()} == {job["id"]}
    low = rows["GCA_900111795.1"]
    assert (low["completeness"], low["contig_n50"], low["additional_notes"]) == (
        62.4, 18422, "Low completeness")
    _check_snapshots(table, out)
    # Iceberg only: no Hive metastore or Derby log; Spark's own warehouse stays empty.
    assert sorted(p.name for p in builtin.iterdir()) == ["iceberg", "s3", "spark-warehouse"]
    assert not any((builtin / "spark-warehouse").iterdir())

    # An importer in the Iceberg lakehouse's own style, unchanged.
    status, out, err = runs[1]
    assert status == 0, err[-3000:]
    job = _job_info(out)
    assert "table checkm2.quality_report\n" in out
    assert _last_line(out) == "idempotent: the second run left every table as the first run did"
    table = _iceberg_table(style, "checkm2.quality_report")
    rows = {row["Name"]: row for row in table.scan().to_arrow().to_pylist()}
    assert sorted(rows) == sorted(report_genomes())
    assert {row["cts_job_id"] for row in rows.values()} == {job["id"]}
    assert (rows["GCA_900111795.1"]["Completeness"], rows["GCA_900111795.1"]["Contig_N50"]) == (
        62.4, 18422)
    _check_snapshots(table, out)

    # The check is not blind on Iceberg: an importer that appends again is caught.
    status, out, err = runs[2]
    assert status == 1, err[-3000:]
    assert _last_line(err) == ("sandbox: not idempotent: the second run changed "
                               "sandbox_tests.lines: 4 -> 8 rows")
    assert len(_iceberg_table(appending, "sandbox_tests.lines").scan().to_arrow()) == 8
    # Nothing of Spark lands in the working directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "appending", "builtin", "inputs", "style"]
