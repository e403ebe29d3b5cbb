"""The sample CTS job of the local stack: a CheckM2 run and its quality_report.tsv.

:func:`publish_sample_job` puts the report where the job says it is (with the CRC64/NVME
checksum the CTS would record), registers the job with the CTS double, and returns the
job document and its completion event.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
JOB = json.loads((HERE / "checkm2_job.json").read_text())
REPORT = (HERE / "checkm2_quality_report.tsv").read_text()


def checkm2_job(stack, job_id: str = JOB["id"], user: str = JOB["user"]) -> dict:
    """Upload the sample report for ``job_id`` and register its job document; return it."""
    doc = copy.deepcopy(JOB)
    doc["id"], doc["user"] = job_id, user
    bucket = doc["outputs"][0]["file"].split("/", 1)[0]
    key = f"{job_id}/quality_report.tsv"
    s3 = stack.s3.client()
    if bucket not in _buckets(s3):
        s3.create_bucket(Bucket=bucket)
    put = s3.put_object(Bucket=bucket, Key=key, Body=REPORT.encode(),
                        ChecksumAlgorithm="CRC64NVME")
    doc["outputs"] = [{"file": f"{bucket}/{key}", "crc64nvme": put["ChecksumCRC64NVME"]}]
    doc["job_input"]["output_dir"] = f"{bucket}/{job_id}"
    stack.cts.add_job(doc)
    return doc


def completion_event(doc: dict) -> bytes:
    """The CTS message announcing the job's (last) completion."""
    last = [t for t in doc["transition_times"] if t["state"] == "complete"][-1]
    return json.dumps({"job_id": doc["id"], "state": "complete", "time": last["time"],
                       "trans_id": last["trans_id"]}).encode()


def report_genomes() -> list[str]:
    return [line.split("\t", 1)[0] for line in REPORT.splitlines()[1:]]


def _buckets(s3) -> set[str]:
    return {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
