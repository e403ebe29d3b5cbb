"""S3 access shared by the dispatcher and the runner: one client factory, URI parsing."""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs


@attrs.frozen
class S3Uri:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        """Parse ``s3://bucket/key``; raise ``ValueError`` for anything else."""
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[len("s3://"):].partition("/")
        if not bucket or not key:
            raise ValueError(f"S3 URI needs a bucket and a key: {uri!r}")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def sibling(self, name: str) -> S3Uri:
        """The object ``name`` in the same "directory" as this one."""
        return S3Uri(self.bucket, self.key.rsplit("/", 1)[0] + "/" + name)


def s3_client(environ: Mapping[str, str] = os.environ, *, timeout_seconds: float = 30.0,
              max_attempts: int = 3):
    """A boto3 S3 client for ``CSEP_S3_ENDPOINT_URL`` (path style), ``CSEP_S3_REGION``.

    ``timeout_seconds`` bounds connecting and each read; ``max_attempts`` counts botocore's
    own retries too, so one call lasts at most about ``2 * timeout * attempts``.

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
    a profile, an instance role); they are never passed around by this code.
    """
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=environ.get("CSEP_S3_ENDPOINT_URL") or None,
        region_name=environ.get("CSEP_S3_REGION") or "us-east-1",
        config=Config(s3={"addressing_style": "path"},
                      retries={"total_max_attempts": max_attempts, "mode": "standard"},
                      connect_timeout=min(timeout_seconds, 5), read_timeout=timeout_seconds),
    )
