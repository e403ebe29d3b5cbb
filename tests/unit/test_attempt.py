"""The runner's refusals that need no server, what it keeps out of results, and what an
importer is given and how its errors end the attempt."""

from __future__ import annotations

import json
from datetime import datetime

from contract.result import Status
from contract.spec import EventRef, ImporterRef, JobInfo, JobSpec, to_yaml
from runner.attempt import run_attempt
from runner.locations import FileLocation

ENV = {"CSEP_IMPORTER_DIRS": "", "CSEP_SPARK_MASTER": "no-such-master://never"}


def spec(image: str | None, py_module: str, name: str = "checkm2") -> str:
    return to_yaml(JobSpec(
        job=JobInfo(id="j1", outputs=(), image=image, image_digest="sha256:ab",
                    input_file_count=0, output_file_count=0,
                    completion_time=datetime.fromisoformat("2026-11-20T00:00:00+00:00"),
                    user="alice", namespace_prefix="u_alice__"),
        importer=ImporterRef(name=name, py_module=py_module),
        event=EventRef(topic="t", partition=0, offset=0, trans_id="x",
                       time=datetime.fromisoformat("2026-11-20T00:00:00+00:00"))))


def attempt(tmp_path, text: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return run_attempt(FileLocation(str(path)), ENV)


def test_an_invalid_spec_is_refused_naming_the_field(tmp_path):
    result = attempt(tmp_path, "job: {id: j1}\n")
    assert (result.status, result.exit_code, result.job_id) == (Status.BAD_SPEC, 64, "unknown")
    assert "job.outputs: required field missing" in result.message
    assert result.traceback is None and result.delta_commits == ()


def test_an_image_without_importer_is_refused(tmp_path):
    result = attempt(tmp_path, spec("example.org/unknown", "importers.checkm2"))
    assert (result.status, result.exit_code, result.job_id) == (Status.BAD_SPEC, 64, "j1")
    assert "no importer is registered for image 'example.org/unknown'" in result.message


def test_a_spec_without_image_or_object_is_refused(tmp_path):
    result = attempt(tmp_path, spec(None, "importers.checkm2"))
    assert (result.status, result.exit_code, result.job_id) == (Status.BAD_SPEC, 64, "j1")
    assert "neither an image nor an S3 object" in result.message


def test_unusable_runner_settings_are_an_infrastructure_failure_naming_the_variable(
        tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(spec("ghcr.io/kbasetest/cdm_checkm2", "importers.checkm2"))
    result = run_attempt(FileLocation(str(path)), {**ENV, "CSEP_TABLE_FORMAT": "parquet"})
    assert (result.status, result.exit_code, result.service) == (
        Status.INFRASTRUCTURE, 69, "runner")
    assert "CSEP_TABLE_FORMAT='parquet'" in result.message


def test_a_spec_cannot_choose_the_module(tmp_path):
    result = attempt(tmp_path, spec("ghcr.io/kbasetest/cdm_checkm2:0.3.0", "os"))
    assert result.exit_code == 64
    assert "registered to 'checkm2' (importers.checkm2)" in result.message


# An importer as the importer contract describes one: it records what it was given, then needs a
# `table` key in its metadata, as importers do (a missing key is a ValueError, an
# unchecked one a KeyError).
PROBE = '''
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def run_import(get_spark, job_info, metadata):
    Path(metadata["record"]).write_text(json.dumps({"job_info": job_info,
                                                    "metadata": metadata}))
    if metadata.get("check") == "unchecked":
        return metadata["table"]
    if "table" not in metadata:
        raise ValueError("Expected a 'table' key in the importer metadata")
    if metadata.get("check") == "bug":
        return 1 / 0
'''

PROBE_YAML = '''
name: {name}
py_module: {module}
image: example.org/csep-tests/{name}
# The metadata as an importer author writes it: comments, nested mappings, lists.
importer_meta:
  record: {record}   # where the importer writes what it got
  {extra}
'''

NESTED_META = '''table: reports
  columns:           # in file order
    - {name: genome, type: string}
    - {name: size, type: bigint, nullable: false}
  read:
    options: {header: true, sep: "\\t"}
    skip: [1, 2.5, null, "x"]'''


def probe(tmp_path, name: str, extra: str, module: str = "") -> tuple:
    """A registry of the probe importer (as ``name``, with ``extra`` metadata lines) and
    another importer whose dependency is not installed; the probe's result and record."""
    module = module or f"csep_probe_{name}"
    folder = tmp_path / "importers"
    folder.mkdir()
    (folder / f"{module}.py").write_text(PROBE)
    record = tmp_path / "record.json"
    (folder / f"{name}.yaml").write_text(PROBE_YAML.format(name=name, module=module,
                                                           record=record, extra=extra))
    (folder / f"csep_needs_{name}.py").write_text(
        "import csep_not_installed_anywhere\n\ndef run_import(get_spark, job_info, metadata):"
        "\n    pass\n")
    (folder / "needs.yaml").write_text(f"name: needs\npy_module: csep_needs_{name}\n"
                                       f"image: example.org/csep-tests/needs-{name}\n")
    path = tmp_path / "spec.yaml"
    path.write_text(spec(f"example.org/csep-tests/{name}", module, name))
    result = run_attempt(FileLocation(str(path)), {**ENV, "CSEP_IMPORTER_DIRS": str(folder)})
    return result, json.loads(record.read_text()) if record.exists() else None


def test_the_importer_gets_seed_001_job_info_and_its_metadata_as_written(tmp_path):
    result, got = probe(tmp_path, "probe_meta", NESTED_META)
    assert (result.status, result.exit_code) == (Status.SUCCEEDED, 0), result.message
    # Exactly the contract's keys, plus the user and their namespace prefix.
    assert got["job_info"] == {
        "id": "j1", "outputs": [], "image": "example.org/csep-tests/probe_meta",
        "image_digest": "sha256:ab", "input_file_count": 0, "output_file_count": 0,
        "completion_time": "2026-11-20T00:00:00+00:00", "user": "alice",
        "namespace_prefix": "u_alice__"}
    assert got["metadata"] == {
        "record": str(tmp_path / "record.json"), "table": "reports",
        "columns": [{"name": "genome", "type": "string"},
                    {"name": "size", "type": "bigint", "nullable": False}],
        "read": {"options": {"header": True, "sep": "\t"}, "skip": [1, 2.5, None, "x"]}}


def test_a_value_error_from_the_importer_is_bad_data_with_its_message(tmp_path):
    result, got = probe(tmp_path, "probe_value", "check: checked")
    assert got is not None  # the importer ran: another importer's missing module did not stop it
    assert (result.status, result.exit_code) == (Status.BAD_DATA, 65)
    assert result.error_type == "ValueError"
    assert result.message == "ValueError: Expected a 'table' key in the importer metadata"
    assert "Expected a 'table' key" in result.traceback


def test_a_key_error_from_the_importer_is_bad_data_naming_the_key(tmp_path):
    result, _ = probe(tmp_path, "probe_key", "check: unchecked")
    assert (result.status, result.exit_code) == (Status.BAD_DATA, 65)
    assert (result.error_type, result.message) == ("KeyError", "KeyError: 'table'")


def test_another_exception_from_the_importer_is_a_failure(tmp_path):
    result, _ = probe(tmp_path, "probe_bug", "table: t\n  check: bug")
    assert (result.status, result.exit_code) == (Status.FAILED, 70)
    assert (result.error_type, result.message) == ("ZeroDivisionError", "division by zero")


def test_an_importer_whose_dependency_is_missing_fails_naming_the_module(tmp_path):
    folder = tmp_path / "importers"
    probe(tmp_path, "needs_probe", "table: t")
    path = tmp_path / "needs-spec.yaml"
    path.write_text(spec("example.org/csep-tests/needs-needs_probe", "csep_needs_needs_probe",
                         "needs"))
    result = run_attempt(FileLocation(str(path)), {**ENV, "CSEP_IMPORTER_DIRS": str(folder)})
    assert (result.status, result.exit_code) == (Status.FAILED, 70)
    assert result.message.startswith(
        f"importer 'needs' cannot run here: {folder / 'needs.yaml'}: py_module: "
        "'csep_needs_needs_probe' imports module 'csep_not_installed_anywhere', which is not "
        "installed here"), result.message
