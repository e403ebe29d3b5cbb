"""The importer contract through the dispatcher, as importers written from the seed
alone use it, on classic Spark and over Spark Connect, in one dispatcher run each:

- the upstream-style CheckM2 importer (``examples/upstream_style``: a module-level logger,
  ``spark.read.option(...).csv`` of ``s3a://`` paths, casts to a schema,
  ``spark.catalog.tableExists`` else ``saveAsTable``, ``DeltaTable.forName(...).merge``)
  imports the sample job unchanged, rows read back with delta-rs;
- a probe importer gets exactly the contract's ``job_info`` (plus ``user`` and
  ``namespace_prefix``; the CTS's checksum, the last completion's time), its
  ``importer_meta`` as written (nested mappings, lists), and a session from
  ``get_spark(executor_cores=2)`` (``spark.executor.cores`` on a classic session; a
  Connect server's executors are the server's);
- the upstream importer registered with metadata lacking its key raises ``ValueError``:
  bad data, one attempt, dead-lettered with the importer's message;
- an importer importing a module the runner lacks fails naming the module, and only its
  own events: the other importers of the registry run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from contract.spec import namespace_prefix
from stack import samples
from tests.integration.dispatcher_lane import Lane, headers, wait_until

UPSTREAM = Path(__file__).resolve().parents[2] / "examples" / "upstream_style"
IMAGE = "example.org/csep-upstream-tests/{}"

PROBE = '''
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def run_import(get_spark, job_info, metadata):
    spark = get_spark(executor_cores=2)
    logger.info("probing job %s", job_info["id"])
    cores = spark.conf.get("spark.executor.cores", None)
    Path(os.environ["CSEP_TEST_STATE_DIR"], job_info["id"] + ".json").write_text(json.dumps(
        {"job_info": job_info, "metadata": metadata, "executor_cores": cores}))
'''

PROBE_YAML = f'''
name: probe
py_module: csep_upstream_probe
image: {IMAGE.format("probe")}
# As an author writes it: comments, nested mappings, lists.
importer_meta:
  deltatable: probe.t     # not used
  columns:
    - {{name: genome, type: string}}
    - {{name: size, type: bigint, nullable: false}}
  read: {{options: {{header: true, sep: "\\t"}}, skip: [1, 2.5, null, x]}}
'''

# The upstream importer, registered for a second image with metadata lacking its key.
NO_KEY_YAML = f'''
name: checkm2 without its deltatable
py_module: upstream_checkm2
image: {IMAGE.format("no-deltatable")}
importer_meta:
  table: quality_report   # the importer expects `deltatable`
'''

NEEDS = '''
import csep_not_installed_anywhere


def run_import(get_spark, job_info, metadata):
    csep_not_installed_anywhere.run(job_info)
'''

NEEDS_YAML = f'''
name: needs a module
py_module: csep_upstream_needs
image: {IMAGE.format("needs")}
'''


@pytest.fixture(params=["classic", "connect"])
def spark_env(request) -> dict[str, str]:
    """The runners' Spark: the stack's classic one, or the Spark Connect server."""
    if request.param == "classic":
        return {}
    return {"CSEP_SPARK_MASTER": request.getfixturevalue("spark_connect").url}


@pytest.fixture
def registry(tmp_path) -> str:
    """``CSEP_IMPORTER_DIRS``: the upstream-style importer, and the tests' importers."""
    folder = tmp_path / "importers"
    folder.mkdir()
    for name, text in [("csep_upstream_probe.py", PROBE), ("probe.yaml", PROBE_YAML),
                       ("no_deltatable.yaml", NO_KEY_YAML),
                       ("csep_upstream_needs.py", NEEDS), ("needs.yaml", NEEDS_YAML)]:
        (folder / name).write_text(text)
    return os.pathsep.join([str(UPSTREAM), str(folder)])


def test_importers_written_from_seed_001_run_unchanged(stack, tmp_path, spark_env, registry):
    lane = Lane(stack, tmp_path)
    try:
        user = f"u{lane.name}"
        checkm2 = samples.checkm2_job(stack, job_id=f"checkm2-{lane.name}", user=user)
        output = checkm2["outputs"][0]
        probe = lane.job(f"probe-{lane.name}", "unused", user=user,
                         image={"name": IMAGE.format("probe"), "digest": "sha256:0b",
                                "tag": "1"},
                         outputs=[output], output_file_count=1, input_file_count=3,
                         transition_times=[
                             {"state": "complete", "time": "2026-11-20T10:15:00.123+00:00",
                              "trans_id": "t-earlier"},
                             {"state": "complete", "time": "2026-11-21T08:00:00.5+00:00",
                              "trans_id": f"t-probe-{lane.name}"}])
        no_key = lane.job(f"nokey-{lane.name}", "unused", user=user, outputs=[output],
                          image={"name": IMAGE.format("no-deltatable"), "digest": "sha256:0c",
                                 "tag": "1"})
        needs = lane.job(f"needs-{lane.name}", "unused", user=user,
                         image={"name": IMAGE.format("needs"), "digest": "sha256:0d",
                                "tag": "1"})
        lane.publish(samples.completion_event(checkm2))
        for job in (probe, no_key):
            lane.complete(job["id"])
        offset = lane.complete(needs["id"])
        dispatcher = lane.dispatcher(env={"CSEP_IMPORTER_DIRS": registry, **spark_env},
                                     retry={"max_attempts": 2, "initial_backoff_seconds": 0.2,
                                            "max_backoff_seconds": 1, "jitter_seconds": 0.1,
                                            "max_elapsed_seconds": 300})

        wait_until(lambda: lane.committed()[0] == offset + 1, 900, "the four events' commits")
        letters = {json.loads(r.value)["job_id"]: r for r in lane.dead_letters(2, timeout=30)}
        assert sorted(letters) == sorted([no_key["id"], needs["id"]])

        # The upstream-style importer: the sample's rows, cast to its schema.
        rows = stack.delta_rows(f"{namespace_prefix(user)}checkm2_upstream.db/quality_report")
        assert sorted(r["Name"] for r in rows) == sorted(samples.report_genomes())
        assert {r["cts_job_id"] for r in rows} == {checkm2["id"]}
        first = next(r for r in rows if r["Name"] == "GCA_000005845.2")
        assert (first["Completeness"], first["Genome_Size"],
                first["Translation_Table_Used"]) == (99.98, 4641652, 11)

        # The probe: the contract's job_info and the metadata as written.
        got = json.loads((lane.state_dir / f"{probe['id']}.json").read_text())
        assert got["job_info"] == {
            "id": probe["id"], "outputs": [{"file": output["file"],
                                            "crc64nvme": output["crc64nvme"]}],
            "image": IMAGE.format("probe"), "image_digest": "sha256:0b",
            "input_file_count": 3, "output_file_count": 1,
            "completion_time": "2026-11-21T08:00:00.500000+00:00",  # the last completion
            "user": user, "namespace_prefix": namespace_prefix(user)}
        assert got["metadata"] == {
            "deltatable": "probe.t",
            "columns": [{"name": "genome", "type": "string"},
                        {"name": "size", "type": "bigint", "nullable": False}],
            "read": {"options": {"header": True, "sep": "\t"}, "skip": [1, 2.5, None, "x"]}}
        if not spark_env:  # a classic session is made with the cores asked for
            assert got["executor_cores"] == "2"

        # A ValueError from the importer: bad data, not retried, its message carried.
        [result] = lane.results(no_key["id"])
        assert (result.exit_code, result.status.value) == (65, "bad_data")
        reason = json.loads(letters[no_key["id"]].value)["error_dlq"]
        assert reason == ("runner exit 65: ValueError: Expected a 'deltatable' key in the "
                          "importer metadata with the database and table as the value")
        assert headers(letters[no_key["id"]])["__csep.errors.attempts"] == "1"

        # A module the runner lacks: named; retried like any failure, then dead-lettered.
        results = lane.results(needs["id"])
        assert [r.exit_code for r in results] == [70, 70]
        reason = json.loads(letters[needs["id"]].value)["error_dlq"]
        assert "importer 'needs a module' cannot run here" in reason, reason
        assert ("imports module 'csep_not_installed_anywhere', which is not installed "
                "here") in reason, reason
        assert dispatcher.stop() == 0
    finally:
        lane.close()
