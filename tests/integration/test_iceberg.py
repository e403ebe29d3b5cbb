"""The runner on the ``iceberg`` table format: Iceberg tables in the stack's REST catalog.

The catalog is SeaweedFS's own Iceberg REST catalog, beside its S3, with OAuth2 client
credentials on; each user's warehouse is provisioned by the stack. The importers are
written in the Iceberg lakehouse's own style (tests/fixtures/iceberg_importers) and run
unchanged. What Spark wrote is read back by pyiceberg through the same catalog. The
tests share one store; each passes alone and in any order: the sample CheckM2 import that
creates the user's ``checkm2.quality_report`` is a module fixture, which the tests
merging into that table or reading it ask for, and every other table is one test's own.
"""

from __future__ import annotations

import os
import subprocess
import sys

import attrs
import pytest

from contract import result as results
from contract.spec import namespace_prefix
from contract.store import SpecStore
from importers.tables import COMPLETION_TIME_COLUMN
from stack.paths import ROOT
from tests.integration.test_runner import (
    COMPLETED,
    REPORT_A,
    checkm2_spec,
    make_spec,
    run_at_once,
    run_runner,
    run_spec,
    upload,
)
from tests.integration.test_secrets import run_while_scanning

ICEBERG_IMPORTERS = ROOT / "tests" / "fixtures" / "iceberg_importers"
SAMPLE_REPORT = (ROOT / "stack" / "samples" / "checkm2" / "quality_report.tsv").read_text()
USER = "icy"

SECOND_REPORT = SAMPLE_REPORT.splitlines(keepends=True)[0] + (
    "GCA_900111795.1\t70.5\t4.75\tGradient Boost (General Model)\t11\t0.851\t18422\t287.9\t"
    "2104877\t0.38\t1954\tBetter assembly\n"
    "GCA_000001405.1\t95.0\t1.0\tNeural Network (Specific Model)\t11\t0.9\t50000\t300.0\t"
    "3000000\t0.41\t3000\tNone\n")
CLUSTERS = "repA\trepA\nrepA\tm1\nrepB\trepB\n"
ANNOTATIONS = (
    "#\tgene name\tKO\tthrshld\tscore\tE-value\tKO definition\n"
    "#\t---------\t------\t-------\t------\t---------\t-------------\n"
    "*\tgene1\tK00001\t100.5\t150.2\t1.2e-40\talcohol dehydrogenase\n"
    "\tgene1\tK00002\t200.0\t20.1\t0.5\taldehyde reductase\n"
    "*\tgene2\tK00003\t80.0\t99.9\t3.4e-20\thomoserine dehydrogenase\n")


@pytest.fixture(scope="module")
def store(stack, s3):
    return SpecStore(f"s3://{stack.lake_bucket}/iceberg-specs", s3)


@pytest.fixture(scope="module")
def env(stack):
    stack.create_iceberg_catalog(USER)
    from stack.local import subprocess_env
    return subprocess_env({**stack.iceberg_runner_env(),
                           # The built-in CheckM2 importer too (its own test).
                           "CSEP_IMPORTER_DIRS": os.pathsep.join(
                               ["@builtin", str(ICEBERG_IMPORTERS)])})


@pytest.fixture(scope="module")
def catalog(stack, env):
    """pyiceberg on the user's warehouse, through the same REST catalog as Spark."""
    return stack.iceberg_catalog(USER)


def spec(s3, tool: str, job_id: str, file_name: str, body: str):
    output = upload(s3, "cts-out", f"{job_id}/{file_name}", body)
    made = make_spec(job_id, f"example.org/iceberg-style/{tool}", f"iceberg-style {tool}",
                     f"iceberg_{tool}", [output], {"namespace": tool}, user=USER)
    # The dispatcher's spec names the Delta prefix; on Iceberg the runner gives "".
    assert made.job.namespace_prefix == namespace_prefix(USER)
    return made


def run_ok(store, made, env) -> results.RunResult:
    """Run ``made``; its result, which must be a success."""
    result = run_spec(store, made, env, 0)
    assert result.status == results.Status.SUCCEEDED
    return result


def rows(catalog, name: str, key) -> list[dict]:
    return sorted(catalog.load_table(name).scan().to_arrow().to_pylist(), key=key)


def snapshot_ids(catalog, name: str) -> set[int]:
    """The ids of the table's snapshots, as pyiceberg reads them; none before it exists."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return {s.snapshot_id for s in catalog.load_table(name).snapshots()}
    except NoSuchTableError:
        return set()


def assert_lists_its_snapshots(catalog, result, name: str, before: set[int],
                               snapshots: list | None = None) -> str:
    """The result lists exactly the table's snapshots made since ``before`` (their ids,
    operations and counts as pyiceberg reads them), and all of them bear one marker,
    which is returned. ``snapshots`` are the table's as read right after the attempt,
    when other attempts may have changed it since; by default they are read now."""
    if snapshots is None:
        snapshots = catalog.load_table(name).snapshots()
    made = [s for s in snapshots if s.snapshot_id not in before]
    assert [(s.table, s.snapshot_id, s.operation) for s in result.iceberg_snapshots] == [
        (name, s.snapshot_id, s.summary.operation.value) for s in made]
    for listed, snapshot in zip(result.iceberg_snapshots, made, strict=True):
        for count in ("added-records", "deleted-records", "total-records"):
            assert listed.summary.get(count) == snapshot.summary[count]
        assert "csep-attempt" not in listed.summary
    markers = {s.summary["csep-attempt"] for s in made}
    assert len(markers) <= 1 and all(m.startswith("csep-attempt:") for m in markers)
    return markers.pop() if markers else ""


@attrs.frozen(kw_only=True)
class SampleImport:
    """The sample CheckM2 job's import and what was seen right after it, before any other
    job of the module merged into its table."""

    done: subprocess.CompletedProcess
    #: Command lines that held a secret while it ran, and every command line seen.
    leaks: list[str]
    seen: set[str]
    result: results.RunResult
    #: ``checkm2.quality_report``'s snapshots, rows and the catalog's namespaces then.
    snapshots: list
    rows: list[dict]
    namespaces: list[tuple[str, ...]]


@pytest.fixture(scope="module")
def sample_checkm2(stack, s3, store, env, catalog) -> SampleImport:
    """The sample CheckM2 job imported once for the module, the first write to the user's
    ``checkm2.quality_report`` (so it creates the table), while every process's command
    line is scanned for the stack's secrets."""
    uri = store.put_spec(spec(s3, "checkm2", "ice-checkm2-a", "quality_report.tsv",
                              SAMPLE_REPORT))
    done, leaks, seen = run_while_scanning([sys.executable, "-m", "runner", uri], env,
                                           stack.secrets())
    assert done.returncode == 0, done.stderr[-6000:]
    return SampleImport(
        done=done, leaks=leaks, seen=seen, result=store.results(uri)[-1],
        snapshots=catalog.load_table("checkm2.quality_report").snapshots(),
        rows=rows(catalog, "checkm2.quality_report", key=lambda r: r["Name"]),
        namespaces=catalog.list_namespaces())


def test_the_sample_checkm2_job_is_imported_into_an_iceberg_table(stack, catalog,
                                                                  sample_checkm2):
    imported = sample_checkm2
    assert imported.leaks == []
    # The scan saw the runner's JVM, configured for the user's catalog.
    jvm = [line for line in imported.seen
           if "SparkSubmit" in line and "cdm-spark-events-runner" in line]
    assert any("spark.sql.catalog.icy.uri" in line for line in jvm)
    assert stack.s3.iceberg_credential not in imported.done.stderr
    result = imported.result
    assert result.status == results.Status.SUCCEEDED
    # The table is new: all its snapshots are this attempt's, the one of its creation.
    assert [(s.operation, s.summary["added-records"]) for s in result.iceberg_snapshots] == [
        ("append", "3")]
    assert_lists_its_snapshots(catalog, result, "checkm2.quality_report", before=set(),
                               snapshots=imported.snapshots)
    assert result.delta_commits == ()

    # Bare names in the user's own catalog: no u_icy__ prefix (the other tests of the
    # module may have made their namespaces already).
    assert ("checkm2",) in imported.namespaces
    assert not [n for n in imported.namespaces if n[0].startswith(namespace_prefix(USER))]
    assert [(r["Name"], r["Completeness"], r["cts_job_id"]) for r in imported.rows] == [
        ("GCA_000005845.2", 99.98, "ice-checkm2-a"),
        ("GCA_000009045.1", 99.87, "ice-checkm2-a"),
        ("GCA_900111795.1", 62.4, "ice-checkm2-a")]


def test_a_second_checkm2_job_merges_through_a_temporary_view(s3, store, env, catalog,
                                                              sample_checkm2):
    before = snapshot_ids(catalog, "checkm2.quality_report")
    result = run_ok(store, spec(s3, "checkm2", "ice-checkm2-b", "quality_report.tsv",
                                SECOND_REPORT), env)

    # The MERGE's snapshot, none of the first job's: one updated row, one inserted.
    assert [(s.operation, s.summary["total-records"]) for s in result.iceberg_snapshots] == [
        ("overwrite", "4")]
    assert_lists_its_snapshots(catalog, result, "checkm2.quality_report", before)

    found = rows(catalog, "checkm2.quality_report", key=lambda r: r["Name"])
    assert [(r["Name"], r["Completeness"], r["Additional_Notes"], r["cts_job_id"])
            for r in found] == [
        ("GCA_000001405.1", 95.0, "None", "ice-checkm2-b"),
        ("GCA_000005845.2", 99.98, "None", "ice-checkm2-a"),
        ("GCA_000009045.1", 99.87, "None", "ice-checkm2-a"),
        ("GCA_900111795.1", 70.5, "Better assembly", "ice-checkm2-b")]
    operations = [s.summary.operation.value
                  for s in catalog.load_table("checkm2.quality_report").snapshots()]
    assert operations[0] == "append" and len(operations) >= 2


def test_mmseqs2_clusters_are_imported(s3, store, env, catalog):
    run_ok(store, spec(s3, "mmseqs2", "ice-mmseqs2", "cluster_results_cluster.tsv", CLUSTERS),
           env)

    found = rows(catalog, "mmseqs2.clusters", key=lambda r: (r["representative"], r["member"]))
    assert found == [
        {"representative": "repA", "member": "m1", "cts_job_id": "ice-mmseqs2"},
        {"representative": "repA", "member": "repA", "cts_job_id": "ice-mmseqs2"},
        {"representative": "repB", "member": "repB", "cts_job_id": "ice-mmseqs2"}]


def test_kofamscan_significant_annotations_are_imported_and_a_replay_changes_nothing(
        s3, store, env, catalog):
    made = spec(s3, "kofamscan", "ice-kofamscan", "annotations.tsv", ANNOTATIONS)
    first = run_ok(store, made, env)
    first_marker = assert_lists_its_snapshots(catalog, first, "kofamscan.annotations",
                                              before=set())
    assert [s.summary["added-records"] for s in first.iceberg_snapshots] == ["2"]
    expected = [
        {"significant": "*", "gene_name": "gene1", "KO": "K00001", "threshold": 100.5,
         "score": 150.2, "evalue": 1.2e-40, "KO_definition": "alcohol dehydrogenase",
         "cts_job_id": "ice-kofamscan"},
        {"significant": "*", "gene_name": "gene2", "KO": "K00003", "threshold": 80.0,
         "score": 99.9, "evalue": 3.4e-20, "KO_definition": "homoserine dehydrogenase",
         "cts_job_id": "ice-kofamscan"}]
    assert rows(catalog, "kofamscan.annotations", key=lambda r: r["gene_name"]) == expected

    before = snapshot_ids(catalog, "kofamscan.annotations")
    # The replay: MERGE ... WHEN NOT MATCHED THEN INSERT only.
    replay = run_ok(store, made, env)

    assert rows(catalog, "kofamscan.annotations", key=lambda r: r["gene_name"]) == expected
    # The replay lists its own snapshots (under its own marker), none of the first's,
    # and they added nothing.
    replay_marker = assert_lists_its_snapshots(catalog, replay, "kofamscan.annotations",
                                               before)
    assert replay_marker != first_marker
    assert all(s.summary.get("added-records", "0") == "0" and s.summary["total-records"] == "2"
               for s in replay.iceberg_snapshots)


def test_two_runners_merging_into_one_table_at_once_both_commit(s3, store, env, catalog):
    """Two runners start together, each MERGEing one row into the same Iceberg table while
    holding its commit back for 5 s. Iceberg lets one commit and refuses the other's
    (its validation finds the first one's new file); that runner runs its importer again
    and commits. Both succeed, and each result lists only its own snapshots, though
    their sessions overlapped in time."""
    def slow_merge(job_id: str):
        return make_spec(job_id, "example.org/iceberg-style/slow-merge",
                         "iceberg-style slow merge", "iceberg_slow_merge", [],
                         {"hold_seconds": 5}, user=USER)

    # The table exists before the race, so the two only race to commit their MERGEs.
    run_ok(store, slow_merge("ice-conflict-warm"), env)
    before = snapshot_ids(catalog, "conflicts.rows")

    uris = [store.put_spec(slow_merge(f"ice-conflict-{n}")) for n in range(2)]
    outcomes = run_at_once(uris, env, timeout=600)

    assert [code for code, _ in outcomes] == [0, 0], [err[-3000:] for _, err in outcomes]
    reran = [err for _, err in outcomes if "Iceberg commit conflict in run 1" in err]
    assert len(reran) >= 1, [err[-3000:] for _, err in outcomes]
    found = [store.results(uri)[-1] for uri in uris]
    assert [r.status for r in found] == [results.Status.SUCCEEDED] * 2
    # One snapshot each, adding its row (no row matched: Iceberg appends a new file).
    assert [[(s.table, s.summary["added-records"]) for s in r.iceberg_snapshots]
            for r in found] == [[("conflicts.rows", "1")]] * 2
    # Together the two results list every snapshot made since, each its own only.
    made = {s.snapshot_id: s.summary["csep-attempt"]
            for s in catalog.load_table("conflicts.rows").snapshots()
            if s.snapshot_id not in before}
    listed = [s.snapshot_id for r in found for s in r.iceberg_snapshots]
    assert sorted(listed) == sorted(made)
    assert made[found[0].iceberg_snapshots[0].snapshot_id] != (
        made[found[1].iceberg_snapshots[0].snapshot_id])
    assert rows(catalog, "conflicts.rows", key=lambda r: r["cts_job_id"]) == [
        {"cts_job_id": job, "slept": None}
        for job in ("ice-conflict-0", "ice-conflict-1", "ice-conflict-warm")]


def test_a_wrong_catalog_credential_is_an_infrastructure_failure(stack, s3, store, env,
                                                                catalog, sample_checkm2):
    wrong = {**env, "CSEP_ICEBERG_CREDENTIAL": f"{stack.s3.access_key}:not-the-secret"}
    uri = store.put_spec(spec(s3, "checkm2", "ice-wrong-credential", "quality_report.tsv",
                              SECOND_REPORT))
    done = run_runner(uri, wrong)

    assert done.returncode == 69, done.stderr[-6000:]
    result = store.results(uri)[-1]
    assert result.status == results.Status.INFRASTRUCTURE
    assert result.service == "catalog"
    assert "refused the runner's client credentials" in result.message
    assert "not-the-secret" not in result.message + (result.traceback or "") + done.stderr
    # Nothing was written (the sample import made the table).
    assert "ice-wrong-credential" not in {
        r["cts_job_id"] for r in catalog.load_table("checkm2.quality_report").scan().to_arrow()
        .to_pylist()}


def test_the_built_in_checkm2_importer_and_helper_library_write_iceberg(stack, s3, store,
                                                                       env):
    # Another user: another warehouse, provisioned as for the first.
    stack.create_iceberg_catalog("icyb")
    report = upload(s3, "cts-out", "ice-builtin/quality_report.tsv", REPORT_A)
    made = checkm2_spec("ice-builtin", [report], user="icyb")
    run_ok(store, made, env)

    theirs = stack.iceberg_catalog("icyb")
    table = theirs.load_table("checkm2.quality_report")
    found = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["genome_name"])
    assert [(r["genome_name"], r["completeness"], r["translation_table_used"],
             r["cts_job_id"]) for r in found] == [
        ("GCA_1", 98.5, 11, "ice-builtin"), ("GCA_2", 75.0, 11, "ice-builtin")]
    assert {r[COMPLETION_TIME_COLUMN] for r in found} == {COMPLETED}
