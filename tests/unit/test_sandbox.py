"""The sandbox's pieces that need no Spark: the job it builds, the staged files, its
refusals of unusable input, and the idempotence comparison."""

from __future__ import annotations

import base64
import hashlib
import textwrap
from pathlib import Path

import pytest
from awscrt import checksums

from contract.result import DeltaCommit, ExitCode, IcebergSnapshot
from runner import sandbox
from runner.sandbox import TableState, Warehouse, changes, main, touched

CHECKM2_YAML = Path(__file__).resolve().parents[2] / "importers" / "checkm2.yaml"
SHEETS_YAML = (Path(__file__).resolve().parents[2] / "importers" / "examples"
               / "sample_sheets.yaml")


def _crc(data: bytes) -> str:
    return base64.b64encode(checksums.crc64nvme(data).to_bytes(8, "big")).decode()


def test_checksum_of_a_file_read_in_chunks_is_the_whole_files(tmp_path):
    data = bytes(range(256)) * 9000  # more than one chunk
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sandbox.crc64nvme(path) == _crc(data)


def test_files_are_staged_as_bucket_and_key_and_described_as_the_jobs_outputs(tmp_path):
    first, second = tmp_path / "a.tsv", tmp_path / "sub" / "b.csv"
    second.parent.mkdir()
    first.write_text("x\n1\n")
    second.write_text("y\n2\n")
    warehouse = Warehouse(tmp_path / "wh")
    outputs = sandbox.stage_outputs([first, second], warehouse, "sandbox-1")
    assert [(o.file, o.crc64nvme) for o in outputs] == [
        ("sandbox/sandbox-1/a.tsv", _crc(b"x\n1\n")), ("sandbox/sandbox-1/b.csv", _crc(b"y\n2\n"))]
    assert (warehouse.s3 / "sandbox" / "sandbox-1" / "b.csv").read_text() == "y\n2\n"
    # The s3a mount table of the bucket falls back to that directory.
    overrides = warehouse.spark_overrides()
    assert overrides["spark.hadoop.fs.viewfs.mounttable.sandbox.linkFallback"] == (
        (warehouse.s3 / "sandbox").as_uri())

    entry = sandbox.load_importer(CHECKM2_YAML)
    info = sandbox.sandbox_job(entry, outputs, "sandbox-1").for_importer()
    assert info["outputs"][1] == {"file": "sandbox/sandbox-1/b.csv", "crc64nvme": _crc(b"y\n2\n")}
    assert (info["image"], info["user"], info["namespace_prefix"]) == (
        "ghcr.io/kbasetest/cdm_checkm2", "sandbox", "u_sandbox__")
    assert info["output_file_count"] == 2


def _refusal(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()[-1]


def test_unparsable_yaml_is_refused_naming_the_file(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    code, line = _refusal(capsys, broken, tmp_path / "broken.yaml")
    assert code == ExitCode.BAD_SPEC
    assert line.startswith(f"sandbox: {broken}: cannot be read as YAML: ")


def test_missing_module_is_refused_as_the_registry_refuses_it(tmp_path, capsys):
    yaml_file = tmp_path / "ghost.yaml"
    yaml_file.write_text(textwrap.dedent("""\
        name: ghost
        py_module: csep_no_such_importer
        image: example.org/ghost
        """))
    code, line = _refusal(capsys, yaml_file, yaml_file)
    assert code == ExitCode.BAD_SPEC
    assert line == (f"sandbox: {yaml_file}: py_module: 'csep_no_such_importer' cannot be "
                    f"imported: ModuleNotFoundError: No module named 'csep_no_such_importer'")


def test_missing_file_and_repeated_names_are_refused(tmp_path, capsys):
    code, line = _refusal(capsys, CHECKM2_YAML, tmp_path / "absent.tsv")
    assert (code, line) == (ExitCode.BAD_SPEC,
                            f"sandbox: {tmp_path / 'absent.tsv'}: not a readable file")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "r.tsv").write_text("x\n")
    (tmp_path / "b" / "r.tsv").write_text("y\n")
    code, line = _refusal(capsys, CHECKM2_YAML, tmp_path / "a" / "r.tsv", tmp_path / "b" / "r.tsv")
    assert code == ExitCode.BAD_SPEC
    assert line.startswith(f"sandbox: {tmp_path / 'b' / 'r.tsv'} and {tmp_path / 'a' / 'r.tsv'} "
                           f"have the same name")


SCHEMA = (("id", "string", False), ("value", "double", True))


def _state(rows=2, fingerprint="7", version=1, schema=SCHEMA) -> TableState:
    return TableState(schema=schema, rows=rows, fingerprint=fingerprint, version=version)


def test_a_new_version_with_the_same_rows_is_no_change():
    assert changes({"db.t": _state()}, {"db.t": _state(version=2)}) == []


def test_changed_rows_schema_and_tables_are_each_reported():
    before = {"db.same": _state(), "db.grown": _state(), "db.edited": _state(),
              "db.altered": _state(), "db.gone": _state()}
    after = {"db.same": _state(version=5), "db.grown": _state(rows=4, fingerprint="14"),
             "db.edited": _state(fingerprint="8"),
             "db.altered": _state(schema=SCHEMA + (("extra", "int", True),)),
             "db.new": _state(rows=1)}
    assert changes(before, after) == [
        "db.altered: schema changed",
        "db.edited: row contents changed (2 rows)",
        "db.gone: dropped",
        "db.grown: 2 -> 4 rows",
        "db.new: created (1 rows)",
    ]


def test_touched_tables_are_the_changed_and_the_committed_ones():
    before = {"db.a": _state(), "db.b": _state(), "db.c": _state()}
    after = {"db.a": _state(), "db.b": _state(version=2), "db.d": _state()}
    commits = [DeltaCommit(table="db.a", version=2, operation="MERGE", metrics={})]
    assert touched(before, after, commits) == ["db.a", "db.b", "db.c", "db.d"]


def test_an_s3_importer_gets_one_object_as_an_s3_job(tmp_path):
    sheet = tmp_path / "my sheet.tsv"
    sheet.write_bytes(b"sample_id\ns1\n")
    warehouse = Warehouse(tmp_path / "wh")
    entry = sandbox.load_importer(SHEETS_YAML)
    outputs = sandbox.stage_outputs([sheet], warehouse, "sandbox-1")
    info = sandbox.sandbox_job(entry, outputs, "sandbox-1", warehouse).for_importer()
    assert info["source"] == "s3" and info["image"] is None
    assert info["outputs"] == [{"file": "sandbox/sandbox-1/my sheet.tsv",
                                "crc64nvme": _crc(b"sample_id\ns1\n")}]
    assert info["object"] == {"bucket": "sandbox", "key": "sandbox-1/my sheet.tsv", "size": 13,
                              "etag": hashlib.md5(b"sample_id\ns1\n").hexdigest(),
                              "version_id": None, "sequencer": None}
    other = tmp_path / "other.tsv"
    other.write_bytes(b"sample_id\n")
    two = sandbox.stage_outputs([sheet, other], warehouse, "sandbox-2")
    with pytest.raises(sandbox.SandboxError, match="give one FILE"):
        sandbox.sandbox_job(entry, two, "sandbox-2", warehouse)


def test_on_iceberg_the_session_has_a_local_catalog_named_my_and_sandbox(tmp_path):
    warehouse = Warehouse(tmp_path / "wh")
    jars = ("/jars/delta.jar", "/jars/iceberg-spark-runtime.jar")
    settings = warehouse.spark_settings(jars, "iceberg")
    conf = {**settings.spark_conf(1, sandbox.USER), **warehouse.spark_overrides("iceberg")}

    assert conf["spark.jars"] == ",".join(jars)
    assert conf["spark.sql.extensions"] == (
        "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
    assert conf["spark.sql.defaultCatalog"] == "my"
    catalogs = {key: value for key, value in conf.items()
                if key.startswith("spark.sql.catalog.")}
    for name in ("my", "sandbox"):
        prefix = f"spark.sql.catalog.{name}"
        assert {key: value for key, value in catalogs.items()
                if key == prefix or key.startswith(prefix + ".")} == {
            prefix: "org.apache.iceberg.spark.SparkCatalog",
            f"{prefix}.type": "hadoop",
            f"{prefix}.warehouse": (tmp_path / "wh" / "iceberg").as_uri(),
        }
    assert len(catalogs) == 6  # no other catalog, no spark_catalog override
    assert settings.catalog_secrets(sandbox.USER) == {}
    # No Delta, no Hive, nothing of a REST catalog or its S3.
    assert not [key for key in conf if "delta" in key.lower() or "hive" in key
                or "jdo" in key or "derby" in conf[key].lower() or "uri" in key]
    # Outputs are still served from the warehouse, and Spark's own directory is in it.
    assert conf["spark.hadoop.fs.viewfs.mounttable.sandbox.linkFallback"] == (
        (warehouse.s3 / "sandbox").as_uri())
    assert conf["spark.sql.warehouse.dir"] == str(tmp_path / "wh" / "spark-warehouse")


def test_on_iceberg_the_job_has_no_namespace_prefix(tmp_path):
    report = tmp_path / "quality_report.tsv"
    report.write_text("Name\nx\n")
    warehouse = Warehouse(tmp_path / "wh")
    entry = sandbox.load_importer(CHECKM2_YAML)
    outputs = sandbox.stage_outputs([report], warehouse, "sandbox-1")
    iceberg = sandbox.sandbox_job(entry, outputs, "sandbox-1", warehouse, "iceberg")
    delta = sandbox.sandbox_job(entry, outputs, "sandbox-1", warehouse)
    assert (iceberg.namespace_prefix, iceberg.user) == ("", "sandbox")
    assert delta.namespace_prefix == "u_sandbox__"
    # The Delta session is as it was: Delta's catalog and a Derby metastore in the
    # warehouse, no Iceberg.
    conf = {**warehouse.spark_settings(("/jars/delta.jar",)).spark_conf(1, sandbox.USER),
            **warehouse.spark_overrides()}
    assert conf["spark.sql.catalog.spark_catalog"] == (
        "org.apache.spark.sql.delta.catalog.DeltaCatalog")
    assert str(tmp_path / "wh" / "metastore_db") in conf[
        "spark.hadoop.javax.jdo.option.ConnectionURL"]
    assert not [key for key in conf if "iceberg" in key or key == "spark.sql.defaultCatalog"]


def test_commits_are_described_by_version_or_snapshot():
    assert sandbox.described(DeltaCommit(table="db.t", version=3, operation="MERGE",
                                         metrics={})) == "v3 MERGE"
    snapshot = IcebergSnapshot(table="ns.t", snapshot_id=42, operation="overwrite",
                               summary={"added-records": "2", "deleted-records": "2"})
    assert sandbox.described(snapshot) == "snapshot 42 overwrite (+2 -2 records)"
    appended = IcebergSnapshot(table="ns.t", snapshot_id=7, operation="append",
                               summary={"added-records": "3"})
    assert sandbox.described(appended) == "snapshot 7 append (+3 -0 records)"


def test_an_unknown_table_format_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(CHECKM2_YAML), str(tmp_path / "x.tsv")], {"CSEP_TABLE_FORMAT": "hudi"})
    assert exit_.value.code == 2
    assert "CSEP_TABLE_FORMAT='hudi': expected one of delta, iceberg" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(CHECKM2_YAML), str(tmp_path / "x.tsv"), "--format", "hudi"])
