"""Where specs and results live in S3: the audit trail.

    <base>/<job_id>/<trans_id>/spec.yaml              written once, never replaced
    <base>/<job_id>/<trans_id>/attempt-NNNN.yaml      the dispatcher's claim of attempt N
    <base>/<job_id>/<trans_id>/result-NNNN.yaml       attempt N's result
    <base>/<job_id>/<trans_id>/result-<ended_at>-<random>.yaml   a runner run by hand
    <base>/<job_id>/<trans_id>/drift-<hash>.yaml      how a later event's spec differed

``base`` is an ``s3://bucket/prefix`` URI. The spec key depends only on the event (the
job and the CTS transition that completed it), so a redelivered event, a DLQ replay or a
second dispatcher finds the same spec and the attempts already made on it.
"""

from __future__ import annotations

import re
import secrets
from datetime import timezone

from common.s3 import S3Uri
from contract import result as results
from contract import spec as specs
from contract.identifiers import check_segment, encode_segment

SPEC_NAME = "spec.yaml"
RESULT_PREFIX = "result-"
DRIFT_PREFIX = "drift-"
#: What S3 servers answer when a conditional write does not hold.
_CONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_SAFE = re.compile(r"^[A-Za-z0-9._:-]+$")


def _segment(field: str, value: str) -> str:
    # Ids are URL-safe in practice; anything else is percent-encoded, never dropped.
    check_segment(field, value)
    return value if _SAFE.match(value) else encode_segment(value)


_STAMP = "%Y%m%dT%H%M%S.%fZ"


def result_name(result: results.RunResult) -> str:
    """A new, time-ordered file name for ``result`` (the same layout for local specs)."""
    stamp = result.ended_at.astimezone(timezone.utc).strftime(_STAMP)
    return f"{RESULT_PREFIX}{stamp}-{secrets.token_hex(4)}.yaml"




class SpecStore:
    """Reads and writes specs and results under ``base`` with a boto3 S3 client."""

    def __init__(self, base: str, client) -> None:
        parsed = S3Uri.parse(base.rstrip("/") + "/x")
        self.bucket = parsed.bucket
        self.prefix = parsed.key[:-2]
        self.client = client

    @property
    def base(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def spec_uri(self, job_id: str, trans_id: str) -> str:
        """The deterministic spec location for an event. Raises
        :class:`~contract.identifiers.InvalidIdentifier` for an id that is not one segment."""
        key = "/".join(filter(None, [self.prefix, _segment("job_id", job_id),
                                     _segment("trans_id", trans_id), SPEC_NAME]))
        return f"s3://{self.bucket}/{key}"

    def put_spec(self, spec: specs.JobSpec) -> str:
        """Write ``spec`` at its deterministic key (replacing any); return the URI."""
        uri = self.spec_uri(spec.job.id, spec.event.trans_id)
        self.write_text(uri, specs.to_yaml(spec))
        return uri

    def put_spec_once(self, spec: specs.JobSpec) -> tuple[str, str | None]:
        """Write ``spec`` at its key unless a spec is there already; return the URI and
        the text of the spec found there (None when this call wrote it)."""
        uri = self.spec_uri(spec.job.id, spec.event.trans_id)
        if self.write_text_if_absent(uri, specs.to_yaml(spec)):
            return uri, None
        return uri, self.read_text(uri)

    def get_spec(self, uri: str) -> specs.JobSpec:
        """Read a spec. Raises :class:`contract.spec.SpecError` if it is not a valid spec."""
        return specs.from_yaml(self.read_text(uri))

    def put_result(self, result: results.RunResult) -> str:
        """Write ``result`` next to its spec under a new, time-ordered name; return the URI."""
        uri = str(S3Uri.parse(result.spec_uri).sibling(result_name(result)))
        self.write_text(uri, results.to_yaml(result))
        return uri

    def result_uris(self, spec_uri: str) -> list[str]:
        """The result files of a spec, in name order (the dispatcher's ``result-NNNN``
        by attempt, then those of runners run by hand)."""
        return self.files(spec_uri, RESULT_PREFIX)

    def files(self, spec_uri: str, prefix: str = "") -> list[str]:
        """The files beside a spec whose names start with ``prefix``, in name order."""
        folder = S3Uri.parse(spec_uri).sibling(prefix)
        return [f"s3://{folder.bucket}/{key}" for key in sorted(self._keys(folder.key))]

    def results(self, spec_uri: str) -> list[results.RunResult]:
        """The readable results of a spec, in the order the attempts ended."""
        return sorted((results.from_yaml(self.read_text(uri))
                       for uri in self.result_uris(spec_uri)), key=lambda r: r.ended_at)

    def spec_uris(self, job_id: str | None = None) -> list[str]:
        """Every spec under the base, or only those of ``job_id``."""
        job = _segment("job_id", job_id) if job_id else None
        prefix = "/".join(filter(None, [self.prefix, job]))
        prefix = prefix + "/" if prefix else ""
        return [f"s3://{self.bucket}/{key}" for key in sorted(self._keys(prefix))
                if key.endswith("/" + SPEC_NAME)]

    def read_text(self, uri: str) -> str:
        location = S3Uri.parse(uri)
        body = self.client.get_object(Bucket=location.bucket, Key=location.key)["Body"]
        return body.read().decode("utf-8")

    def read_text_and_etag(self, uri: str) -> tuple[str, str]:
        location = S3Uri.parse(uri)
        answer = self.client.get_object(Bucket=location.bucket, Key=location.key)
        return answer["Body"].read().decode("utf-8"), answer["ETag"]

    def write_text(self, uri: str, text: str, **conditions: str) -> None:
        location = S3Uri.parse(uri)
        self.client.put_object(Bucket=location.bucket, Key=location.key,
                               Body=text.encode("utf-8"), ContentType="application/yaml",
                               ChecksumAlgorithm="CRC64NVME", **conditions)

    def write_text_if_absent(self, uri: str, text: str) -> bool:
        """Create the object; False (and nothing written) if it exists already."""
        return self._conditional(uri, text, IfNoneMatch="*")

    def replace_text_if_match(self, uri: str, text: str, etag: str) -> bool:
        """Replace the object if it is still the version ``etag``; False otherwise."""
        return self._conditional(uri, text, IfMatch=etag)

    def _conditional(self, uri: str, text: str, **condition: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.write_text(uri, text, **condition)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _CONDITION_FAILED:
                return False
            raise
        return True

    def _keys(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        return [obj["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for obj in page.get("Contents", [])]
