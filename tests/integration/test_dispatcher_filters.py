"""An importer's ``match`` conditions in the running dispatcher: a matching job is
imported, the others are acknowledged as no-ops with the failed condition logged, and a
bad condition stops the dispatcher at registry load naming the file and the field."""

from __future__ import annotations

import json

import pytest

from dispatcher.cts import META_COMPLETE, META_NO_OPERATION, META_START
from tests.integration.dispatcher_lane import FIXTURES, wait_until


def report(lane) -> list[dict]:
    """A real output (the runner checks it exists with its checksum) named as the match wants."""
    key = f"{lane.name}/quality_report.tsv"
    put = lane.stack.s3.client().put_object(Bucket=lane.stack.lake_bucket, Key=key,
                                            Body=b"genome\n", ChecksumAlgorithm="CRC64NVME")
    return [{"file": f"{lane.stack.lake_bucket}/{key}", "crc64nvme": put["ChecksumCRC64NVME"]}]


def test_jobs_the_match_refuses_are_acknowledged_as_no_ops(lane):
    outputs = report(lane)
    taken = lane.job(f"filters-taken-{lane.name}", "filtered", outputs=outputs,
                     output_file_count=1, job_input={"params": {"args": ["--threads=2"]}})
    dry_run = lane.job(f"filters-dry-run-{lane.name}", "filtered", outputs=outputs,
                       output_file_count=1, job_input={"params": {"args": ["--dry-run"]}})
    no_report = lane.job(f"filters-no-report-{lane.name}", "filtered")
    for doc in (dry_run, no_report, taken):
        last = lane.complete(doc["id"])
    dispatcher = lane.dispatcher()

    wait_until(lambda: lane.committed()[0] == last + 1, 120, "all three events committed")
    assert lane.done(taken["id"])
    assert lane.attempts(dry_run["id"]) == lane.attempts(no_report["id"]) == 0
    assert [lane.store.spec_uri(taken["id"], f"t-{taken['id']}")] == lane.store.spec_uris()
    meta = {doc["id"]: [k for u in lane.stack.cts.updates_for(doc["id"]) for k in u.set_fields]
            for doc in (taken, dry_run, no_report)}
    assert meta == {taken["id"]: [META_START, META_COMPLETE],
                    dry_run["id"]: [META_NO_OPERATION], no_report["id"]: [META_NO_OPERATION]}
    assert lane.dead_letters(0, timeout=1) == []
    metrics = dispatcher.metrics()
    assert 'csep_events_total{outcome="imported"} 1.0' in metrics
    assert 'csep_events_total{outcome="no_importer"} 2.0' in metrics
    assert dispatcher.stop() == 0

    lines = [json.loads(line) for line in dispatcher.log(tail=10**7).splitlines()
             if line.startswith("{")]
    refused = {line["job_id"]: line["message"] for line in lines
               if "does not take the job" in line["message"]}
    assert refused == {
        dry_run["id"]: "importer dispatch_test_filtered does not take the job: "
                       "match.not: the job meets {arg=['--dry-run']}",
        no_report["id"]: "importer dispatch_test_filtered does not take the job: "
                         "match.output: no output file (of 0) matches any of "
                         "['*/quality_report.tsv']"}


def test_a_bad_match_stops_the_dispatcher_at_registry_load(lane, tmp_path):
    bad = tmp_path / "bad_importers"
    bad.mkdir()
    (bad / "picky.yaml").write_text(
        "name: picky\npy_module: csep_dispatch_tests\nimage: example.org/csep/picky\n"
        "importer_meta: {behaviour: quick}\nmatch:\n  any_of: [{user: 7}]\n")
    with pytest.raises(RuntimeError) as caught:
        lane.dispatcher(env={"CSEP_IMPORTER_DIRS": f"@builtin:{FIXTURES}:{bad}"})
    message = str(caught.value)
    assert message.startswith("dispatcher exited 78") and "invalid importer registry:" in message
    assert "Traceback" not in message  # one line, like any unusable setting
    assert f"{bad / 'picky.yaml'}: match.any_of[0].user: invalid value for type" in message

