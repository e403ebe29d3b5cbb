"""An importer package deployed as its owners ship it (``examples/importer_package``: two
importers sharing a helper module, YAMLs naming ``pkg.module``) is the dispatcher's whole
registry, named by the ``registry_dirs`` setting alone: its events become Delta rows
(read back with delta-rs) through the dispatcher and the runners it launches, whose
Spark is classic or a Spark Connect server; its own CheckM2 importer is taken in place of
the built-in one. Asking for the built-ins too is refused, naming both files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.spec import namespace_prefix
from stack import samples
from tests.integration.dispatcher_lane import Lane, wait_until

PACKAGE = Path(__file__).resolve().parents[2] / "examples" / "importer_package" / \
    "csep_example_importers"
SEQKIT_IMAGE = "example.org/csep-examples/seqkit"
STATS = ("file\tformat\ttype\tnum_seqs\tsum_len\tmin_len\tavg_len\tmax_len\n"
         "contigs.fa\tFASTA\tDNA\t120\t4500000\t500\t37500.5\t900000\n"
         "plasmids.fa\tFASTA\tDNA\t3\t60000\t5000\t20000.0\t40000\n")


@pytest.fixture(params=["classic", "connect"])
def spark_env(request) -> dict[str, str]:
    """The runners' Spark: the stack's classic one, or the Spark Connect server."""
    if request.param == "classic":
        return {}
    return {"CSEP_SPARK_MASTER": request.getfixturevalue("spark_connect").url}


def seqkit_job(lane: Lane, job_id: str, user: str, bucket: str) -> dict:
    """A seqkit job whose one output, ``stats.tsv``, is on S3 with its checksum."""
    key = f"{job_id}/stats.tsv"
    put = lane.stack.s3.client().put_object(Bucket=bucket, Key=key, Body=STATS.encode(),
                                            ChecksumAlgorithm="CRC64NVME")
    return lane.job(job_id, "unused", user=user, output_file_count=1,
                    image={"name": SEQKIT_IMAGE, "digest": "sha256:02", "tag": "2"},
                    outputs=[{"file": f"{bucket}/{key}",
                              "crc64nvme": put["ChecksumCRC64NVME"]}])


def test_a_package_is_the_whole_registry_through_the_dispatcher(stack, tmp_path, spark_env):
    lane = Lane(stack, tmp_path)
    try:
        user = f"u{lane.name}"
        checkm2 = samples.checkm2_job(stack, job_id=f"checkm2-{lane.name}", user=user)
        bucket = checkm2["outputs"][0]["file"].split("/", 1)[0]
        seqkit = seqkit_job(lane, f"seqkit-{lane.name}", user, bucket)
        lane.publish(samples.completion_event(checkm2))
        offset = lane.complete(seqkit["id"])
        # Nothing in the environment: the setting names the package, and only it.
        dispatcher = lane.dispatcher(env={"CSEP_IMPORTER_DIRS": "", **spark_env},
                                     registry_dirs=[str(PACKAGE)])

        wait_until(lambda: lane.committed()[0] == offset + 1, 600, "both imports' commits")
        assert lane.dead_letters(0, timeout=1) == []
        checkm2_rows = stack.delta_rows(f"{namespace_prefix(user)}checkm2.db/quality_report")
        assert sorted(r["genome_name"] for r in checkm2_rows) == sorted(samples.report_genomes())
        assert {r["cts_job_id"] for r in checkm2_rows} == {checkm2["id"]}
        stats_rows = stack.delta_rows(f"{namespace_prefix(user)}seqkit.db/stats")
        assert sorted((r["file"], r["num_seqs"], r["cts_job_id"]) for r in stats_rows) == [
            ("contigs.fa", 120, seqkit["id"]), ("plasmids.fa", 3, seqkit["id"])]

        specs = [lane.store.get_spec(uri) for uri in lane.store.spec_uris()]
        assert sorted(s.importer.py_module for s in specs) == [
            "csep_example_importers.checkm2", "csep_example_importers.seqkit_stats"]
        for uri in lane.store.spec_uris():
            assert [r.status.value for r in lane.store.results(uri)] == ["succeeded"]
        assert dispatcher.stop() == 0
    finally:
        lane.close()


def test_the_package_and_the_builtins_clash_on_checkm2(lane):
    with pytest.raises(RuntimeError) as caught:
        lane.dispatcher(env={"CSEP_IMPORTER_DIRS": "@builtin"}, registry_dirs=[str(PACKAGE)])
    message = str(caught.value)
    assert message.startswith("dispatcher exited 78") and "invalid importer registry:" in message
    builtin = Path(__file__).resolve().parents[2] / "importers" / "checkm2.yaml"
    assert (f"{PACKAGE / 'checkm2.yaml'}: image 'ghcr.io/kbasetest/cdm_checkm2' is already "
            f"registered by {builtin}; one importer per image") in message


def test_ten_first_events_for_a_new_table_are_all_imported_in_their_first_attempt(
        stack, spark_connect, tmp_path):
    """Ten seqkit jobs of one user at once, the user's table not there yet: every runner
    finds it missing and creates it; those that lose the race to another runner's
    creation run the importer again in the same attempt and MERGE. With one attempt per
    event, nothing is dead-lettered."""
    lane = Lane(stack, tmp_path)
    try:
        user = f"u{lane.name}"
        stack.s3.create_bucket("cts-out")
        jobs = [seqkit_job(lane, f"first-{n}-{lane.name}", user, "cts-out") for n in range(10)]
        offsets = [lane.complete(job["id"]) for job in jobs]
        lane.dispatcher(env={"CSEP_IMPORTER_DIRS": str(PACKAGE),
                             "CSEP_SPARK_MASTER": spark_connect.url},
                        max_in_flight=10, retry={"max_attempts": 1})

        wait_until(lambda: lane.committed()[0] == offsets[-1] + 1, 900, "ten imports' commits")
        reasons = [json.loads(r.value)["error_dlq"] for r in lane.dead_letters(0, timeout=1)]
        assert reasons == []
        operations = []
        for uri in lane.store.spec_uris():
            [result] = lane.store.results(uri)  # one attempt each
            assert result.status.value == "succeeded", result
            operations.append(sorted({c.operation for c in result.delta_commits}))
        assert len(operations) == 10
        # One runner created the table; every other one MERGEd into it.
        assert sorted(operations).count(["MERGE"]) == 9, operations
        rows = stack.delta_rows(f"{namespace_prefix(user)}seqkit.db/stats")
        assert sorted((r["cts_job_id"], r["file"]) for r in rows) == sorted(
            (job["id"], file) for job in jobs for file in ("contigs.fa", "plasmids.fa"))
    finally:
        lane.close()
