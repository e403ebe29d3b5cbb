from datetime import datetime

import pytest

from contract.spec import EventRef, ImporterRef
from dispatcher.cts import parse_job
from dispatcher.errors import EventRejected

DOC = {
    "id": "job1", "user": "alice", "state": "complete",
    "image": {"name": "ghcr.io/kbasetest/cdm_checkm2", "digest": "sha256:abc", "tag": "0.3.0"},
    "job_input": {"cluster": "perlmutter", "params": {"args": ["--threads", "4",
                                                               {"type": "input_files"}]}},
    "input_file_count": 12, "output_file_count": 1,
    "outputs": [{"file": "bucket/out/quality_report.tsv", "crc64nvme": "4ekt2WB1KO4="}],
    "transition_times": [
        {"state": "created", "time": "2026-01-01T00:00:00Z", "trans_id": "a"},
        {"state": "complete", "time": "2026-01-01T01:00:00Z", "trans_id": "b"},
        {"state": "complete", "time": "2026-01-01T02:00:00Z", "trans_id": "c"}],
    "admin_meta": {},
}
IMPORTER = ImporterRef(name="checkm2", py_module="importers.checkm2",
                       importer_meta={"database": "checkm2"})
EVENT = EventRef(topic="cts-jobs", partition=0, offset=5, trans_id="c",
                 time=datetime.fromisoformat("2026-11-20T10:15:00+00:00"))


def test_job_document_maps_to_the_spec():
    spec = parse_job(DOC, "job1").to_spec(IMPORTER, EVENT)
    assert spec.job.image == "ghcr.io/kbasetest/cdm_checkm2"
    assert spec.job.image_digest == "sha256:abc"
    assert spec.job.completion_time == datetime.fromisoformat("2026-01-01T02:00:00Z")  # the last
    assert spec.job.namespace_prefix == "u_alice__"
    assert spec.job.outputs[0].file == "bucket/out/quality_report.tsv"
    assert (spec.job.input_file_count, spec.job.output_file_count) == (12, 1)
    assert spec.args == ("--threads", "4", '{"type": "input_files"}')
    assert spec.importer == IMPORTER and spec.event == EVENT


def test_unusable_documents_are_rejected_naming_the_field():
    with pytest.raises(EventRejected, match="input_file_count"):
        parse_job({**DOC, "input_file_count": "12"}, "job1")
    never_completed = {**DOC, "transition_times": DOC["transition_times"][:1]}
    with pytest.raises(EventRejected, match="no 'complete' transition"):
        parse_job(never_completed, "job1").to_spec(IMPORTER, EVENT)


def test_an_answer_about_another_job_or_an_unusable_user_is_rejected():
    with pytest.raises(EventRejected, match="answered job 'job1' when asked for 'job2'"):
        parse_job(DOC, "job2")
    with pytest.raises(EventRejected, match="cannot name a table namespace"):
        parse_job({**DOC, "user": "x; DROP TABLE y"}, "job1")
    with pytest.raises(EventRejected, match="UTC offset"):
        parse_job({**DOC, "transition_times": [{"state": "complete", "time": "2026-01-01T01:00"}]},
                  "job1")
