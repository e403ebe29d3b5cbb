"""S3 object-created notifications, as MinIO publishes them to Kafka, through the running
dispatcher: objects uploaded to the stack's S3 are routed by bucket and key, checked and
imported; the rest is acknowledged or dead-lettered with the reason."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

from common.crc64nvme import of_bytes
from contract.spec import namespace_prefix
from tests.integration.dispatcher_lane import FIXTURES, Lane, headers, wait_until

TEST_BUCKET = "csep-dispatch-tests"      # routed by tests/fixtures/dispatcher_importers/s3_*
DATAPLANE = "cdm-dataplane"              # routed by importers/examples/sample_sheets.yaml
EXAMPLES = Path(__file__).resolve().parents[2] / "importers" / "examples"


def minio_event(stack, bucket: str, key: str, put: dict | None, size: int | None,
                name: str = "s3:ObjectCreated:Put") -> dict:
    """The Kafka message MinIO publishes for ``name`` on ``bucket``/``key`` by the stack's
    access key: the key ``url.QueryEscape``d (``/`` too, ``+`` for a space), the eTag of
    the PutObject answer, a sequencer from the event time (``%X`` of its nanoseconds)."""
    now = time.time_ns()
    principal = stack.s3.access_key
    obj = {"key": urllib.parse.quote_plus(key, safe=""), "sequencer": f"{now:X}"}
    if put is not None:  # a removal carries no eTag, size or metadata
        obj.update({"size": size, "eTag": put["ETag"].strip('"'),
                    "contentType": "text/tab-separated-values",
                    "userMetadata": {"content-type": "text/tab-separated-values"}})
    record = {
        "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
        "eventTime": datetime.fromtimestamp(now / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        + "Z",
        "eventName": name, "userIdentity": {"principalId": principal},
        "requestParameters": {"accessKey": principal, "region": "", "sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-id-2": "dd9025bab4ad464b049177c95eb6ebf3"
                                           "74d3b3fd1af9251148b658df7ac2e3e8",
                             "x-amz-request-id": f"{now:X}", "x-minio-deployment-id": "csep-tests",
                             "x-minio-origin-endpoint": stack.s3.endpoint},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": principal},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": obj},
        "source": {"host": "127.0.0.1", "port": "",
                   "userAgent": "MinIO (linux; amd64) minio-go/v7"},
    }
    return {"EventName": name, "Key": f"{bucket}/{key}", "Records": [record]}


def upload(stack, bucket: str, key: str, body: bytes, **put_args) -> tuple[dict, dict]:
    """Put the object; return the PutObject answer and MinIO's event for it."""
    put = stack.s3.client().put_object(Bucket=bucket, Key=key, Body=body, **put_args)
    return put, minio_event(stack, bucket, key, put, len(body))


def test_notifications_are_routed_checked_and_acknowledged(stack, tmp_path):
    stack.s3.create_bucket(TEST_BUCKET)
    lane = Lane(stack, tmp_path)
    s3_topic = f"{lane.name}-s3"
    stack.kafka.create_topic(s3_topic, 1)
    client = stack.s3.client()
    prefix = lane.name
    try:
        # Imported: S3 stores its CRC64NVME; S3 stores none (CRC32 only): computed.
        body = b"sample_id\tdepth\nS1\t3.5\n"
        put, stored = upload(stack, TEST_BUCKET, f"quick/{prefix}/my file ü.tsv", body,
                             ChecksumAlgorithm="CRC64NVME")
        crc32_body = b"\x00\x01 no CRC64NVME stored for this one\n" * 1000
        _, computed = upload(stack, TEST_BUCKET, f"quick/{prefix}/crc32 only.bin", crc32_body,
                             ChecksumAlgorithm="CRC32")
        # No importer routes the key: a no-op.
        _, unrouted = upload(stack, TEST_BUCKET, f"elsewhere/{prefix}.tsv", b"x\n")
        # Deleted since the event; replaced since the event: dead-lettered at dispatch.
        _, deleted = upload(stack, TEST_BUCKET, f"quick/{prefix}/deleted.tsv", b"gone\n")
        client.delete_object(Bucket=TEST_BUCKET, Key=f"quick/{prefix}/deleted.tsv")
        _, replaced = upload(stack, TEST_BUCKET, f"quick/{prefix}/replaced.tsv", b"first\n")
        client.put_object(Bucket=TEST_BUCKET, Key=f"quick/{prefix}/replaced.tsv", Body=b"second\n")
        # Replaced between the dispatch and the runner's check (by its importer, attempt 1).
        _, rewritten = upload(stack, TEST_BUCKET, f"rewriting/{prefix}.tsv", b"original\n")
        # A removal; a message of two records (an import and a removal); not a notification.
        removed = minio_event(stack, TEST_BUCKET, f"quick/{prefix}/deleted.tsv", None, None,
                              name="s3:ObjectRemoved:Delete")
        _, second = upload(stack, TEST_BUCKET, f"quick/{prefix}/second+record.tsv", b"y\n")
        two = {**second, "Records": second["Records"] + removed["Records"]}

        offsets = {}
        for name, value in [("stored", stored), ("computed", computed), ("unrouted", unrouted),
                            ("deleted", deleted), ("replaced", replaced),
                            ("rewritten", rewritten), ("removed", removed), ("two", two),
                            ("malformed", b'{"Records": [{"eventName": "s3:ObjectCreated:Put"')]:
            offsets[name] = lane.publish(value, topic=s3_topic)
        dispatcher = lane.dispatcher(s3_topic=s3_topic)

        wait_until(lambda: lane.committed(s3_topic)[0] == offsets["malformed"] + 1, 180,
                   "every notification committed")
        letters = {int(headers(r)["__connect.errors.offset"]): r for r in lane.dead_letters(4)}
        assert sorted(letters) == sorted(offsets[n] for n in ("deleted", "replaced",
                                                              "rewritten", "malformed"))
        reasons = {name: headers(letters[offsets[name]]) for name in
                   ("deleted", "replaced", "rewritten", "malformed")}
        assert {h["__csep.errors.source"] for h in reasons.values()} == {"s3"}
        assert reasons["malformed"]["__connect.errors.exception.class.name"] == "MalformedMessage"
        assert letters[offsets["malformed"]].value.startswith(b'{"Records": [')  # as it came
        assert reasons["deleted"]["__connect.errors.exception.message"] == (
            f"s3://{TEST_BUCKET}/quick/{prefix}/deleted.tsv does not exist any more: deleted "
            f"since the event (s3:ObjectCreated:Put at "
            f"{_event_time(deleted)})")
        assert reasons["replaced"]["__connect.errors.exception.message"].startswith(
            f"s3://{TEST_BUCKET}/quick/{prefix}/replaced.tsv changed since the event (eTag ")
        rewrite = reasons["rewritten"]
        assert rewrite["__connect.errors.exception.class.name"] == "RunnerFailed"
        assert rewrite["__csep.errors.exit.code"] == "65"
        assert (f"runner exit 65: object s3://{TEST_BUCKET}/rewriting/{prefix}.tsv changed "
                "since the event (eTag ") in rewrite["__connect.errors.exception.message"]
        assert json.loads(letters[offsets["rewritten"]].value)["error_dlq"].startswith(
            "runner exit 65")

        specs = {lane.store.get_spec(uri).job.object.key: lane.store.get_spec(uri)
                 for uri in lane.store.spec_uris()}
        assert sorted(specs) == sorted([f"quick/{prefix}/my file ü.tsv",
                                        f"quick/{prefix}/crc32 only.bin",
                                        f"quick/{prefix}/second+record.tsv",
                                        f"rewriting/{prefix}.tsv"])
        first = specs[f"quick/{prefix}/my file ü.tsv"]
        assert first.job.outputs[0].crc64nvme == put["ChecksumCRC64NVME"] == of_bytes(body)
        assert (first.job.object.size, first.job.object.etag) == (len(body),
                                                                  put["ETag"].strip('"'))
        assert first.job.object.sequencer == stored["Records"][0]["s3"]["object"]["sequencer"]
        assert first.event.source == "s3" and first.event.offset == offsets["stored"]
        assert first.job.user == stack.s3.access_key and first.job.image is None
        assert specs[f"quick/{prefix}/crc32 only.bin"].job.outputs[0].crc64nvme == of_bytes(
            crc32_body)
        for key in (f"quick/{prefix}/my file ü.tsv", f"quick/{prefix}/crc32 only.bin",
                    f"quick/{prefix}/second+record.tsv"):
            assert lane.done(specs[key].job.id), key
            uri = lane.store.spec_uri(specs[key].job.id, specs[key].event.trans_id)
            assert [r.status.value for r in lane.store.results(uri)] == ["succeeded"]
        audit = subprocess.run(
            [sys.executable, "-m", "runner.audit", "list", "--job-id", first.job.id],
            env={**dispatcher.env, "CSEP_SPEC_STORE": lane.store.base}, capture_output=True,
            text=True, timeout=60)
        [line] = audit.stdout.splitlines()
        assert line.split("\t")[1:5] == [first.job.id, f"s3://{TEST_BUCKET}/quick/{prefix}/"
                                          "my file ü.tsv", "1", "succeeded"], audit.stderr
        rewritten_spec = specs[f"rewriting/{prefix}.tsv"]
        assert lane.attempts(rewritten_spec.job.id) == 1  # attempt 2 stopped at the check
        results = lane.store.results(lane.store.spec_uri(rewritten_spec.job.id,
                                                         rewritten_spec.event.trans_id))
        assert [(r.status.value, r.exit_code) for r in results] == [
            ("temporary_failure", 75), ("bad_data", 65)]
        assert "changed since the event (eTag" in results[1].message

        metrics = dispatcher.metrics()
        for outcome, count in [("imported", 3), ("ignored", 2), ("no_importer", 1),
                               ("dead_lettered", 4)]:
            assert f'csep_events_total{{outcome="{outcome}"}} {count}.0' in metrics, outcome
        log = dispatcher.log(tail=10**7)
        assert f"no importer routes s3://{TEST_BUCKET}/elsewhere/{prefix}.tsv" in log
        assert "S3 event 's3:ObjectRemoved:Delete' is not an object creation: acknowledged" in log
        assert dispatcher.stop() == 0
    finally:
        lane.close()


def test_an_uploaded_sample_sheet_is_imported_by_the_example_importer(stack, tmp_path):
    stack.s3.create_bucket(DATAPLANE)
    lane = Lane(stack, tmp_path)
    s3_topic = f"{lane.name}-s3"
    stack.kafka.create_topic(s3_topic, 1)
    try:
        key = f"sample-sheets/{lane.name}/my sheet ü.tsv"
        sheet = (b"sample_id\torganism\tcollected_on\tdepth_m\n"
                 b"S1\tE. coli\t2026-11-02\t3.5\nS2\t\t2026-11-03\t\n")
        put, event = upload(stack, DATAPLANE, key, sheet)  # boto3's default: no CRC64NVME
        offset = lane.publish(event, topic=s3_topic)
        dispatcher = lane.dispatcher(s3_topic=s3_topic,
                                     env={"CSEP_IMPORTER_DIRS": f"@builtin:{FIXTURES}:{EXAMPLES}"})

        wait_until(lambda: lane.committed(s3_topic)[0] == offset + 1, 300, "the import's commit")
        assert lane.dead_letters(0, timeout=1) == []
        rows = stack.delta_rows(
            f"{namespace_prefix(stack.s3.access_key)}dataplane.db/sample_sheets")
        assert sorted((r["sample_id"], r["organism"], r["depth_m"]) for r in rows) == [
            ("S1", "E. coli", 3.5), ("S2", None, None)]
        assert {(r["source_object"], r["source_etag"]) for r in rows} == {
            (f"{DATAPLANE}/{key}", put["ETag"].strip('"'))}
        [uri] = lane.store.spec_uris()
        [result] = lane.store.results(uri)
        assert result.status.value == "succeeded" and result.delta_commits
        assert dispatcher.stop() == 0
    finally:
        lane.close()


def _event_time(message: dict) -> str:
    return datetime.fromisoformat(message["Records"][0]["eventTime"]).isoformat()
