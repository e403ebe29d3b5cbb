"""Spec and result YAML round trips, and what the runner refuses before any work."""

from __future__ import annotations
from datetime import datetime

import pytest

from contract import result as results
from contract import spec as specs
from runner.errors import (BadDataError, BadSpecError, ServiceUnavailable, TemporaryFailure,
                           s3_failure)
from contract.result import DeltaCommit, ExitCode, RunResult, Status

SPEC = specs.JobSpec(
    job=specs.JobInfo(id="j1", outputs=(specs.Output("b/k/quality_report.tsv", "4ekt2WB1KO4="),),
                      image="ghcr.io/kbasetest/cdm_checkm2", image_digest="sha256:ab",
                      input_file_count=2, output_file_count=1,
                      completion_time=datetime.fromisoformat("2026-11-20T10:15:00.123+00:00"), user="alice",
                      namespace_prefix=specs.namespace_prefix("alice")),
    importer=specs.ImporterRef(name="checkm2", py_module="importers.checkm2",
                               importer_meta={"database": "checkm2", "table": "q"}),
    event=specs.EventRef(topic="cts-jobs", partition=1, offset=42, trans_id="t1",
                         time=datetime.fromisoformat("2026-11-20T10:15:00.123+00:00")),
    args=("--threads", "4"))


def test_a_spec_survives_yaml():
    assert specs.from_yaml(specs.to_yaml(SPEC)) == SPEC


def test_the_importer_receives_seed_001_job_info_plus_user():
    assert SPEC.job.for_importer() == {
        "id": "j1", "outputs": [{"file": "b/k/quality_report.tsv", "crc64nvme": "4ekt2WB1KO4="}],
        "image": "ghcr.io/kbasetest/cdm_checkm2", "image_digest": "sha256:ab",
        "input_file_count": 2, "output_file_count": 1,
        "completion_time": "2026-11-20T10:15:00.123000+00:00", "user": "alice",
        "namespace_prefix": "u_alice__"}


def test_a_result_survives_yaml():
    result = RunResult(spec_uri="s3://b/p/j1/t1/spec.yaml", job_id="j1", status=Status.SUCCEEDED,
                       exit_code=0, started_at=datetime.fromisoformat("2026-11-20T10:15:00+00:00"),
                       ended_at=datetime.fromisoformat("2026-11-20T10:16:00+00:00"),
                       delta_commits=(DeltaCommit("u_alice__checkm2.q", 3, "MERGE",
                                                  {"numTargetRowsInserted": "2"}),))
    text = results.to_yaml(result)
    assert "status: succeeded" in text
    assert results.from_yaml(text) == result


@pytest.mark.parametrize(("text", "field"), [
    ("job: [", "not valid YAML"),
    ("- a list", "must be a mapping"),
    (specs.to_yaml(SPEC).replace("input_file_count: 2", "input_file_count: '2'"),
     "job.input_file_count"),
    (specs.to_yaml(SPEC).replace("version: 1", "version: 2"), "version 2 is not supported"),
])
def test_invalid_specs_name_the_problem(text, field):
    with pytest.raises(specs.SpecError, match=field):
        specs.from_yaml(text)


def test_errors_carry_their_exit_codes():
    assert (BadSpecError.exit_code, BadDataError.exit_code, TemporaryFailure.exit_code) == (
        ExitCode.BAD_SPEC, ExitCode.BAD_DATA, ExitCode.TEMPORARY)


def _client_error(code, status):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadObject")


def test_s3_errors_are_missing_or_the_infrastructure_s():
    from botocore.exceptions import EndpointConnectionError

    assert isinstance(s3_failure(_client_error("404", 404), "output x", BadDataError), BadDataError)
    assert isinstance(s3_failure(_client_error("NoSuchKey", 404), "spec", BadSpecError),
                      BadSpecError)
    assert isinstance(s3_failure(_client_error("InvalidArgument", 400), "output x", BadDataError),
                      BadDataError)
    for error in (_client_error("SlowDown", 503), _client_error("AccessDenied", 403),
                  EndpointConnectionError(endpoint_url="http://127.0.0.1:1")):
        unavailable = s3_failure(error, "output x", BadDataError)
        assert isinstance(unavailable, ServiceUnavailable) and unavailable.service == "s3"
        assert unavailable.exit_code == 69


def test_exit_codes_map_to_the_statuses_the_runner_writes():
    from contract.result import ExitCode, Status, status_for_exit_code

    assert [status_for_exit_code(code) for code in (0, 64, 65, 69, 75, 70, 1, 137)] == [
        Status.SUCCEEDED, Status.BAD_SPEC, Status.BAD_DATA, Status.INFRASTRUCTURE,
        Status.TEMPORARY_FAILURE, Status.FAILED, Status.FAILED, Status.FAILED]
    assert status_for_exit_code(ExitCode.BAD_DATA) is Status.BAD_DATA
