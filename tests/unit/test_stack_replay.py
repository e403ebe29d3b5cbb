"""Reading event sets: which files make a job, what event it announces, and every
problem named by file and field (no server involved)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stack import samples
from stack.replay import EventSetError, load_set

MIXED = Path(__file__).resolve().parents[1] / "fixtures" / "event_sets" / "mixed"


def test_a_set_is_its_json_documents_with_their_output_files():
    fixtures = load_set(MIXED)
    assert [f.job_id for f in fixtures] == [
        "replay-bad-data", "replay-quick", "replay-refused", "replay-submitted",
        "replay-unknown"]
    quick = fixtures[1]
    assert quick.files == (MIXED / "quick" / "out" / "report.tsv",)
    assert json.loads(quick.event()) == {"job_id": "replay-quick", "state": "complete",
                                         "time": "2026-11-20T10:15:00+00:00",
                                         "trans_id": "replay-quick-t2"}
    assert json.loads(fixtures[3].event())["state"] == "job_submitted"


def test_the_samples_directory_is_a_set_and_a_job_can_be_renamed():
    [checkm2] = load_set(samples.HERE)
    assert checkm2.files == (samples.HERE / "checkm2" / "quality_report.tsv",)
    renamed = checkm2.renamed("other-job", "bob")
    assert (renamed.job_id, renamed.doc["user"]) == ("other-job", "bob")
    assert renamed.doc["outputs"] == [{"file": "cts-data/other-job/quality_report.tsv"}]
    assert renamed.files == checkm2.files
    assert checkm2.doc["id"] == "sample-checkm2-job"  # the original is untouched


@pytest.fixture
def broken(tmp_path):
    target = tmp_path / "set"
    shutil.copytree(MIXED, target)
    return target


def edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_an_output_outside_the_output_dir_is_named(broken):
    edit(broken / "quick.json", lambda d: d["outputs"].append({"file": "elsewhere/x.tsv"}))
    with pytest.raises(EventSetError) as caught:
        load_set(broken)
    assert str(caught.value) == (f"{broken / 'quick.json'}: outputs[1].file: 'elsewhere/x.tsv' "
                                 "is not under job_input.output_dir 'cts-data/replay-quick'")


def test_a_missing_output_file_is_named(broken):
    (broken / "quick" / "out" / "report.tsv").unlink()
    with pytest.raises(EventSetError) as caught:
        load_set(broken)
    assert str(caught.value) == (f"{broken / 'quick.json'}: outputs[0].file: no local file "
                                 f"{broken / 'quick' / 'out' / 'report.tsv'}")


def test_a_bad_document_names_the_field(broken):
    edit(broken / "unknown.json", lambda d: d["transition_times"][1].pop("trans_id"))
    with pytest.raises(EventSetError) as caught:
        load_set(broken)
    assert str(caught.value) == (f"{broken / 'unknown.json'}: transition_times[1].trans_id: "
                                 "required field missing")


def test_two_documents_of_one_job_are_refused(broken):
    edit(broken / "unknown.json", lambda d: d.update(id="replay-quick"))
    with pytest.raises(EventSetError) as caught:
        load_set(broken)
    assert "unknown.json: job id 'replay-quick' is also the id of" in str(caught.value)


def test_a_directory_without_documents_is_refused(tmp_path):
    with pytest.raises(EventSetError, match="no job documents"):
        load_set(tmp_path)
