"""Spec and result YAML round trips, and what the runner refuses before any work."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from contract import result as results
from contract import spec as specs
from contract.result import DeltaCommit, ExitCode, RunResult, Status
from runner.errors import (
    BadDataError,
    BadSpecError,
    ServiceUnavailable,
    TemporaryFailure,
    s3_failure,
)

SPEC = specs.JobSpec(
    job=specs.JobInfo(id="j1", outputs=(specs.Output("b/k/quality_report.tsv", "4ekt2WB1KO4="),),
                      image="ghcr.io/kbasetest/cdm_checkm2", image_digest="sha256:ab",
                      input_file_count=2, output_file_count=1,
                      completion_time=datetime.fromisoformat("2026-11-20T10:15:00.123+00:00"),
                      user="alice",
                      namespace_prefix=specs.namespace_prefix("alice")),
    importer=specs.ImporterRef(name="checkm2", py_module="importers.checkm2",
                               importer_meta={"database": "checkm2", "table": "q"}),
    event=specs.EventRef(topic="cts-jobs", partition=1, offset=42, trans_id="t1",
                         time=datetime.fromisoformat("2026-11-20T10:15:00.123+00:00")),
    args=("--threads", "4"))


S3_SPEC = specs.JobSpec(
    job=specs.JobInfo(
        id="s3-0123456789abcdef0123456789abcdef",
        outputs=(specs.Output("cdm-dataplane/raw/my file ü.tsv", "D3gOhIHSoh8="),),
        image=None, image_digest=None, input_file_count=0, output_file_count=1,
        completion_time=datetime.fromisoformat("2026-11-20T10:15:00.123+00:00"), user="alice",
        namespace_prefix=specs.namespace_prefix("alice"),
        object=specs.S3Object(bucket="cdm-dataplane", key="raw/my file ü.tsv", size=12,
                              etag="6f5902ac237024bdd0c176cb93063dc4", sequencer="17A9C0")),
    importer=specs.ImporterRef(name="sheets", py_module="importers.examples.sample_sheets"),
    event=specs.EventRef(topic="s3-events", partition=0, offset=7, trans_id="17A9C0",
                         time=datetime.fromisoformat("2026-11-20T10:15:00.123+00:00"),
                         source="s3"))

# A spec as the dispatcher wrote it before S3 events existed.
V1_TEXT = """\
job:
  id: j1
  outputs:
  - file: b/k/quality_report.tsv
    crc64nvme: 4ekt2WB1KO4=
  image: ghcr.io/kbasetest/cdm_checkm2
  image_digest: sha256:ab
  input_file_count: 2
  output_file_count: 1
  completion_time: '2026-11-20T10:15:00.123000+00:00'
  user: alice
  namespace_prefix: u_alice__
importer:
  name: checkm2
  py_module: importers.checkm2
  importer_meta:
    database: checkm2
    table: q
  executor_cores: 1
event:
  topic: cts-jobs
  partition: 1
  offset: 42
  trans_id: t1
  time: '2026-11-20T10:15:00.123000+00:00'
  source: cts
args:
- --threads
- '4'
version: 1
"""


def test_a_spec_survives_yaml():
    assert specs.from_yaml(specs.to_yaml(SPEC)) == SPEC
    assert specs.from_yaml(specs.to_yaml(S3_SPEC)) == S3_SPEC


def test_a_cts_spec_is_written_and_read_as_before_s3_events():
    # Runners of the earlier release refuse unknown fields: a CTS spec has no `object`.
    assert specs.to_yaml(SPEC) == V1_TEXT
    assert specs.from_yaml(V1_TEXT) == SPEC
    assert specs.from_yaml(V1_TEXT.replace("  source: cts\n", "")) == SPEC


def test_an_s3_importer_receives_the_object():
    assert S3_SPEC.job.for_importer() == {
        "id": "s3-0123456789abcdef0123456789abcdef", "source": "s3",
        "outputs": [{"file": "cdm-dataplane/raw/my file ü.tsv", "crc64nvme": "D3gOhIHSoh8="}],
        "object": {"bucket": "cdm-dataplane", "key": "raw/my file ü.tsv", "size": 12,
                   "etag": "6f5902ac237024bdd0c176cb93063dc4", "version_id": None,
                   "sequencer": "17A9C0"},
        "image": None, "image_digest": None, "input_file_count": 0, "output_file_count": 1,
        "completion_time": "2026-11-20T10:15:00.123000+00:00", "user": "alice",
        "namespace_prefix": "u_alice__"}


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
    (specs.to_yaml(SPEC).replace("source: cts", "source: s3"),
     "job.object: an event of source s3 needs the object"),
    (specs.to_yaml(S3_SPEC).replace("source: s3", "source: cts"),
     "job.object: an event of source cts has no object"),
    (specs.to_yaml(S3_SPEC).replace("source: s3", "source: gcs"), "event.source: expected cts"),
    (specs.to_yaml(S3_SPEC).replace("- file: cdm-dataplane/", "- file: other/"),
     "job.outputs: an S3 object's job has the object as its one output"),
    (specs.to_yaml(S3_SPEC).replace("size: 12", "size: -1"), "size must not be negative"),
    (specs.to_yaml(S3_SPEC).replace("bucket: cdm-dataplane", "bucket: X"),
     "bucket: 'X' is not a valid S3 bucket name"),
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


def test_only_attempts_that_say_something_about_the_event_are_spent():
    from contract.result import RunResult, Status, counts_as_attempt

    def result(status):
        return RunResult(spec_uri="s3://b/spec.yaml", job_id="j", status=status, exit_code=75,
                         started_at=datetime(2026, 11, 20, tzinfo=timezone.utc),
                         ended_at=datetime(2026, 11, 20, tzinfo=timezone.utc))

    not_spent = {Status.INFRASTRUCTURE, Status.WRITE_CONFLICT}
    assert {s for s in Status if not counts_as_attempt(result(s))} == not_spent
    assert counts_as_attempt(None)  # an unreadable result file
