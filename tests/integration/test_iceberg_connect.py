"""Runners on the ``iceberg`` table format over one shared Spark Connect server.

The server has Iceberg's runtime and extensions and no user's catalog; each runner's
Connect session is given its job user's catalog (``my`` and ``<user>``) and the catalog
credential when it opens. One server serves the module (a JVM costs a core): its warm-up
on Iceberg, two users' runners at once that each try the other's catalog by name, and the
Iceberg-style importers of tests/fixtures/iceberg_importers through the dispatcher. What
Spark wrote is read back by pyiceberg through the stack's REST catalog; the server's log,
its properties file and its event log, and every command line while a runner imports,
are searched for the credential.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract import result as results
from contract.store import SpecStore
from importers.tables import COMPLETION_TIME_COLUMN
from stack.connect_driver import WARMUP_PREFIX
from stack.local import subprocess_env
from tests.conftest import SPARK_CONNECT_WARMUP
from tests.integration.dispatcher_lane import Lane, wait_until
from tests.integration.test_iceberg import run_ok
from tests.integration.test_runner import (
    COMPLETED,
    REPORT_A,
    checkm2_spec,
    make_spec,
    run_runner,
    upload,
)
from tests.integration.test_secrets import run_while_scanning

ICEBERG_IMPORTERS = Path(__file__).resolve().parents[1] / "fixtures" / "iceberg_importers"
REPORT = (Path(__file__).resolve().parents[2] / "stack" / "samples" / "checkm2"
          / "quality_report.tsv").read_text()
CLUSTERS = "repA\trepA\nrepA\tm1\nrepB\trepB\n"
ANNOTATIONS = (
    "#\tgene name\tKO\tthrshld\tscore\tE-value\tKO definition\n"
    "#\t---------\t------\t-------\t------\t---------\t-------------\n"
    "*\tgene1\tK00001\t100.5\t150.2\t1.2e-40\talcohol dehydrogenase\n"
    "\tgene1\tK00002\t200.0\t20.1\t0.5\taldehyde reductase\n")
USERS = ("icca", "iccb")
EXAMPLES = Path(__file__).resolve().parents[2] / "importers" / "examples"
STATS = ("file\tformat\ttype\tnum_seqs\tsum_len\tmin_len\tavg_len\tmax_len\n"
         "contigs.fa\tFASTA\tDNA\t120\t4500000\t500\t37500.5\t900000\n"
         "plasmids.fa\tFASTA\tDNA\t3\t60000\t5000\t20000.0\t40000\n")


@pytest.fixture(scope="module")
def server(stack):
    """The module's Spark Connect server on Iceberg."""
    connect = stack.spark_connect_server("iceberg", "spark-connect-iceberg",
                                         warmup_merges=SPARK_CONNECT_WARMUP, memory="2g")
    connect.start()
    yield connect
    connect.stop()


@pytest.fixture(scope="module")
def env(stack, server):
    for user in USERS:
        stack.create_iceberg_catalog(user)
    return subprocess_env({**stack.iceberg_runner_env(), "CSEP_SPARK_MASTER": server.url,
                           "CSEP_IMPORTER_DIRS": str(ICEBERG_IMPORTERS)})


def secrets(stack) -> list[str]:
    return [*stack.secrets(), stack.s3.iceberg_credential]


def server_texts(server) -> dict[str, str]:
    """What the server shows: its log and its properties file (its UI and event log are
    off: stack.spark_connect.EVENT_LOG says why)."""
    return {name: (server.data_dir / name).read_text(errors="replace")
            for name in ("spark-connect.log", "spark-connect.conf")}


def test_the_server_has_iceberg_no_users_catalog_and_warms_up_on_iceberg(stack, server):
    conf = (server.data_dir / "spark-connect.conf").read_text()
    assert "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions" in conf
    assert "iceberg-spark-runtime" in conf
    assert "spark.sql.catalog." not in conf and "spark.sql.defaultCatalog" not in conf
    assert "io.delta" not in conf and "connect.delta" not in conf

    # The driver says it serves just after the port opens.
    log = wait_until(lambda: (lambda text: text if "Spark Connect serving on port" in text
                              else None)(server_texts(server)["spark-connect.log"]),
                     60, "the server's serving line")
    warmed = f"warm-up: {SPARK_CONNECT_WARMUP} MERGEs committed in "
    assert warmed in log and "(iceberg)" in log, log[-4000:]
    assert log.index(warmed) < log.index("Spark Connect serving on port")
    assert not list(server.data_dir.glob(f"{WARMUP_PREFIX}*"))
    # The warm-up's catalog is a Hadoop catalog of its own: the REST catalog's
    # warehouses hold nothing of it.
    for user in USERS:
        stack.create_iceberg_catalog(user)
        assert ("warmup",) not in stack.iceberg_catalog(user).list_namespaces()


def test_two_users_at_once_cannot_reach_each_others_catalog(stack, s3, env, server,
                                                            tmp_path):
    store = SpecStore(f"s3://{stack.lake_bucket}/iceberg-connect-specs", s3)
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    run_env = {**env, "CSEP_TEST_STATE_DIR": str(meeting)}
    uris = {user: store.put_spec(make_spec(
        f"icc-trespass-{user}", "example.org/iceberg-style/trespass",
        "iceberg-style trespass", "iceberg_trespass", [], user=user)) for user in USERS}

    other = subprocess.Popen([sys.executable, "-m", "runner", uris[USERS[1]]], env=run_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        done, leaks, _ = run_while_scanning([sys.executable, "-m", "runner", uris[USERS[0]]],
                                            run_env, secrets(stack))
        other_out, other_err = other.communicate(timeout=600)
    finally:
        if other.poll() is None:
            other.kill()
            other.communicate()
    assert done.returncode == 0, done.stderr[-6000:]
    assert other.returncode == 0, other_err[-6000:]
    assert leaks == []

    for me, them in (USERS, USERS[::-1]):
        seen = json.loads((meeting / f"{me}.json").read_text())
        assert seen["other"] == them and seen["own_by_name"] == 1
        # Its session knows its own catalogs only: the other user's name is no catalog
        # there, so "<other>.iso.rows" is a namespace its own catalog does not have.
        assert them not in seen["catalogs"] and {"my", me} <= set(seen["catalogs"])
        assert all(seen["refused"].values()), seen["refused"]
        for what, error in seen["refused"].items():
            assert "AnalysisException" in error or "NoSuchNamespace" in error or (
                "not found" in error.lower()), (what, error)
        # Spark's SET shows the credential redacted.
        assert seen["credential_shown"] == ["*********(redacted)"]

        result = store.results(uris[me])[-1]
        assert result.status == results.Status.SUCCEEDED
        assert [(s.table, s.operation) for s in result.iceberg_snapshots] == [
            ("iso.rows", "append")]

        # Each warehouse holds its own user's row and nothing the other tried to write.
        catalog = stack.iceberg_catalog(me)
        assert catalog.list_namespaces() == [("iso",)]
        assert catalog.list_tables("iso") == [("iso", "rows")]
        assert catalog.load_table("iso.rows").scan().to_arrow().to_pylist() == [
            {"owner": me, "cts_job_id": f"icc-trespass-{me}"}]

    # The credential reached the sessions, not what the server shows.
    texts = server_texts(server)
    assert "spark.ui.enabled false" in texts["spark-connect.conf"]
    assert "spark.eventLog.enabled false" in texts["spark-connect.conf"]
    for index, secret in enumerate(secrets(stack)):
        for name, text in texts.items():
            assert secret not in text, f"secret {index} in the server's {name}"
        assert secret not in done.stderr + other_err + other_out


def test_a_wrong_catalog_credential_over_connect_is_an_infrastructure_failure(
        stack, s3, env, server):
    """The session is given the runner's credential: a wrong one is refused by the
    catalog, the attempt is the infrastructure's, and neither the runner nor the server
    shows the wrong secret; the server serves the next session as before."""
    store = SpecStore(f"s3://{stack.lake_bucket}/iceberg-connect-specs", s3)
    wrong = {**env, "CSEP_ICEBERG_CREDENTIAL": f"{stack.s3.access_key}:not-the-secret"}
    uri = store.put_spec(make_spec("icc-wrong-credential",
                                   "example.org/iceberg-style/mmseqs2", "iceberg-style mmseqs2",
                                   "iceberg_mmseqs2", [upload(
                                       s3, "cts-out", "icc-wrong/cluster_results_cluster.tsv",
                                       CLUSTERS)], {"namespace": "mmseqs2"}, user=USERS[0]))
    done = run_runner(uri, wrong)

    assert done.returncode == 69, done.stderr[-6000:]
    result = store.results(uri)[-1]
    assert (result.status, result.service) == (results.Status.INFRASTRUCTURE, "catalog")
    assert "refused the runner's client credentials" in result.message
    assert "not-the-secret" not in result.message + (result.traceback or "") + done.stderr
    for name, text in server_texts(server).items():
        assert "not-the-secret" not in text, name
    assert ("mmseqs2",) not in stack.iceberg_catalog(USERS[0]).list_namespaces()


def test_iceberg_style_importers_run_over_connect_through_the_dispatcher(stack, s3, env,
                                                                         tmp_path):
    lane = Lane(stack, tmp_path)
    try:
        user = "iccd"
        stack.create_iceberg_catalog(user)
        jobs = []
        for tool, file_name, body in [("checkm2", "quality_report.tsv", REPORT),
                                      ("mmseqs2", "cluster_results_cluster.tsv", CLUSTERS),
                                      ("kofamscan", "annotations.tsv", ANNOTATIONS)]:
            job_id = f"icc-{tool}-{lane.name}"
            output = upload(s3, "cts-out", f"{job_id}/{file_name}", body)
            jobs.append(lane.job(job_id, "unused", user=user,
                                 image={"name": f"example.org/iceberg-style/{tool}",
                                        "digest": "sha256:0e", "tag": "1"},
                                 outputs=[{"file": output.file,
                                           "crc64nvme": output.crc64nvme}],
                                 output_file_count=1))
        offsets = [lane.complete(job["id"]) for job in jobs]
        dispatcher = lane.dispatcher(env={key: env[key] for key in env
                                          if key.startswith(("CSEP_", "AWS_"))})

        wait_until(lambda: lane.committed()[0] == offsets[-1] + 1, 900,
                   "the three events' commits")
        assert lane.dead_letters(0, timeout=5) == []
        for job in jobs:
            [result] = lane.results(job["id"])
            assert result.status == results.Status.SUCCEEDED, result.message
            assert [s.operation for s in result.iceberg_snapshots] == ["append"]
        assert dispatcher.stop() == 0
    finally:
        lane.close()

    catalog = stack.iceberg_catalog(user)
    assert sorted(catalog.list_namespaces()) == [("checkm2",), ("kofamscan",), ("mmseqs2",)]
    checkm2 = catalog.load_table("checkm2.quality_report").scan().to_arrow().to_pylist()
    assert sorted(r["Name"] for r in checkm2) == sorted(
        line.split("\t", 1)[0] for line in REPORT.splitlines()[1:])
    assert {r["cts_job_id"] for r in checkm2} == {jobs[0]["id"]}
    clusters = catalog.load_table("mmseqs2.clusters").scan().to_arrow().to_pylist()
    assert sorted((r["representative"], r["member"]) for r in clusters) == [
        ("repA", "m1"), ("repA", "repA"), ("repB", "repB")]
    annotations = catalog.load_table("kofamscan.annotations").scan().to_arrow().to_pylist()
    assert [(r["gene_name"], r["KO"], r["cts_job_id"]) for r in annotations] == [
        ("gene1", "K00001", jobs[2]["id"])]


def test_a_declarative_importer_and_the_built_in_one_run_over_connect(stack, s3, env):
    """The example declarative importer (a YAML file, no Python) and the built-in CheckM2
    importer, both on the helper library: tables created in the session's format, a
    guarded MERGE, and a replay that leaves the rows as they were."""
    user = "icce"
    stack.create_iceberg_catalog(user)
    store = SpecStore(f"s3://{stack.lake_bucket}/iceberg-connect-specs", s3)
    run_env = {**env, "CSEP_IMPORTER_DIRS": os.pathsep.join(["@builtin", str(EXAMPLES)])}
    stats = upload(s3, "cts-out", "icc-seqkit/all.stats.tsv", STATS)
    seqkit = make_spec("icc-seqkit", "ghcr.io/kbasetest/cdm_seqkit", "seqkit_stats",
                       "importers.declarative", [stats], user=user)
    report = upload(s3, "cts-out", "icc-builtin/quality_report.tsv", REPORT_A)
    catalog = stack.iceberg_catalog(user)

    def stats_rows() -> list[tuple]:
        found = catalog.load_table("seqkit.stats").scan().to_arrow().to_pylist()
        return sorted((r["file"], r["num_seqs"], r["avg_len"], r["cts_job_id"],
                       r[COMPLETION_TIME_COLUMN]) for r in found)

    first = run_ok(store, seqkit, run_env)
    assert {s.table for s in first.iceberg_snapshots} == {"seqkit.stats"}
    expected = [("contigs.fa", 120, 37500.5, "icc-seqkit", COMPLETED),
                ("plasmids.fa", 3, 20000.0, "icc-seqkit", COMPLETED)]
    assert stats_rows() == expected
    run_ok(store, seqkit, run_env)  # a replay
    assert stats_rows() == expected

    run_ok(store, checkm2_spec("icc-builtin", [report], user=user), run_env)
    found = catalog.load_table("checkm2.quality_report").scan().to_arrow().to_pylist()
    assert sorted((r["genome_name"], r["completeness"], r["cts_job_id"]) for r in found) == [
        ("GCA_1", 98.5, "icc-builtin"), ("GCA_2", 75.0, "icc-builtin")]
    assert sorted(catalog.list_namespaces()) == [("checkm2",), ("seqkit",)]
