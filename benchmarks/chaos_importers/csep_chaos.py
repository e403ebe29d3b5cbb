"""A light importer for the chaos benchmark: one row per job, MERGEd into a Delta table
with delta-rs (no JVM), so hundreds of imports run in minutes.

The table is ``$CSEP_CHAOS_TABLE`` (an ``s3://`` URI on the stack's S3). Rows are keyed by
job id and only inserted when missing, so any number of replays leaves one row per job.
A job whose id starts with ``bad-`` is refused as bad data (exit 65). Concurrent commits
are safe through S3's conditional put; a MERGE that loses the race raises delta-rs's
``CommitFailedError``, and the runner runs the importer again (:mod:`runner.conflicts`):
with several dispatchers, a dozen runners MERGE into this one table at once.
"""

from __future__ import annotations

import os

from runner import BadDataError


def storage_options(environ=os.environ) -> dict[str, str]:
    endpoint = environ.get("CSEP_S3_ENDPOINT_URL", "")
    return {"AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": environ.get("CSEP_S3_REGION") or "us-east-1",
            "AWS_ACCESS_KEY_ID": environ.get("AWS_ACCESS_KEY_ID", ""),
            "AWS_SECRET_ACCESS_KEY": environ.get("AWS_SECRET_ACCESS_KEY", ""),
            "AWS_ALLOW_HTTP": str(endpoint.startswith("http://")).lower(),
            "conditional_put": "etag"}


def run_import(get_spark, job_info, metadata):
    import pyarrow as pa
    from deltalake import DeltaTable

    if job_info["id"].startswith("bad-"):
        raise BadDataError(f"job {job_info['id']}: refused on purpose (chaos bad-data job)")
    row = pa.table({"job_id": [job_info["id"]], "completion_time": [job_info["completion_time"]],
                    "pid": [os.getpid()]})
    table = DeltaTable(os.environ["CSEP_CHAOS_TABLE"], storage_options=storage_options())
    (table.merge(row, predicate="t.job_id = s.job_id", source_alias="s", target_alias="t")
     .when_not_matched_insert_all().execute())
