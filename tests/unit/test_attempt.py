"""The runner's refusals that need no server, and what it keeps out of results."""

from __future__ import annotations

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


def test_a_spec_cannot_choose_the_module(tmp_path):
    result = attempt(tmp_path, spec("ghcr.io/kbasetest/cdm_checkm2:0.3.0", "os"))
    assert result.exit_code == 64
    assert "registered to 'checkm2' (importers.checkm2)" in result.message
