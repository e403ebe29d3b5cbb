"""The attempt ledger against the real S3 server: a spec written once with its drift
recorded, attempts claimed by one dispatcher only, taken over only after the lease."""

from __future__ import annotations

from datetime import datetime

import attrs

from contract import result as results
from contract.spec import EventRef, ImporterRef, JobInfo, JobSpec, Output
from contract.store import SpecStore
from dispatcher.ledger import AttemptLedger, lease_expired
from runner import audit
from tests.integration.dispatcher_lane import wait_until

T0 = datetime.fromisoformat("2026-11-20T10:15:00+00:00")


def _spec(meta: dict, partition: int = 0) -> JobSpec:
    return JobSpec(
        job=JobInfo(id="ledger-1", outputs=(Output("b/k", "AAAAAAAAAAA="),), image="img",
                    image_digest="sha256:0", input_file_count=0, output_file_count=1,
                    completion_time=T0, user="u", namespace_prefix="u_u__"),
        importer=ImporterRef(name="imp", py_module="mod", importer_meta=meta),
        event=EventRef(topic="t", partition=partition, offset=3, trans_id="tr", time=T0))


def test_the_spec_is_written_once_and_drift_is_recorded_not_written_over(stack):
    store = SpecStore(f"s3://{stack.lake_bucket}/ledger-tests-spec", stack.s3.client())
    ledger = AttemptLedger(store)
    uri, drift = ledger.write_spec(_spec({"table": "a"}))
    assert drift == {}
    # A duplicate announcement on another partition: same spec but for the event.
    assert ledger.write_spec(_spec({"table": "a"}, partition=1)) == (uri, {})
    _, drift = ledger.write_spec(_spec({"table": "b"}))
    assert drift == {"importer": {"stored": {"name": "imp", "py_module": "mod",
                                             "importer_meta": {"table": "a"},
                                             "executor_cores": 1},
                                  "now": {"name": "imp", "py_module": "mod",
                                          "importer_meta": {"table": "b"},
                                          "executor_cores": 1}}}
    assert store.get_spec(uri).importer.importer_meta == {"table": "a"}
    [drift_file] = store.files(uri, "drift-")
    assert "table: b" in store.read_text(drift_file)
    ledger.write_spec(_spec({"table": "b"}))
    assert len(store.files(uri, "drift-")) == 1  # the same drift is recorded once


def test_attempts_are_claimed_once_and_taken_over_only_after_the_lease(stack):
    store = SpecStore(f"s3://{stack.lake_bucket}/ledger-tests-claims", stack.s3.client())
    first = AttemptLedger(store, lease_seconds=2, owner="dispatcher-a")
    second = AttemptLedger(store, lease_seconds=2, owner="dispatcher-b")
    uri, _ = first.write_spec(_spec({}))
    claim = first.claim(uri, 1)
    assert claim is not None and claim.result_name == "result-0001.yaml"
    assert second.claim(uri, 1) is None
    seen = second.attempts(uri)
    assert seen.last_attempt == 1 and seen.open.claim.owner == "dispatcher-a"
    assert not lease_expired(seen.open)
    assert first.renew(uri, claim) is not None

    # dispatcher-a stops renewing (it was killed): its claim stays, and its lease runs out.
    def expired_claim():
        claimed = second.attempts(uri).open
        return claimed if claimed is not None and lease_expired(claimed) else None

    stale = wait_until(expired_claim, 60, "dispatcher-a's lease to run out")
    taken = second.take_over(uri, stale)
    assert taken.owner == "dispatcher-b" and taken.attempt == 1
    assert [t.previous_owner for t in taken.takeovers] == ["dispatcher-a"]
    assert first.take_over(uri, stale) is None        # the version it saw is gone
    assert first.renew(uri, claim) is None            # and its lease with it
    result = results.RunResult(spec_uri=uri, job_id="ledger-1", status=results.Status.SUCCEEDED,
                               exit_code=0, started_at=T0, ended_at=T0)
    assert second.record(taken, result)
    assert not second.record(taken, attrs.evolve(result, status=results.Status.FAILED))
    done = first.attempts(uri)
    assert done.open is None and done.spent == 1 and done.succeeded
    story = audit.show(store, uri)
    assert story.index("attempt-0001.yaml") < story.index("result-0001.yaml")
    assert "previous_owner: dispatcher-a" in story and "status: succeeded" in story
