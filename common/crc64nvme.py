"""CRC64/NVME checksums as S3 and the CTS record them: base64 of the 8 big-endian bytes.

The arithmetic is awscrt's (installed with ``boto3[crt]``, which computes the same
checksum for boto3 uploads). :class:`ObjectChecksum` reads an S3 object in ranged GETs
and can stop and resume between them, so a caller that must not block for long (the
dispatcher's loop) checksums a large object over several turns. Every GET is
conditional on the object's ETag (and version, when known): if the object is replaced
while it is read, the read fails instead of mixing two versions.
"""

from __future__ import annotations

import base64
import time

from awscrt import checksums

#: One ranged GET reads at most this much.
CHUNK_BYTES = 8 << 20


def encode(crc: int) -> str:
    """The checksum as S3 writes it: ``base64`` of its 8 big-endian bytes."""
    return base64.b64encode(crc.to_bytes(8, "big")).decode()


def of_bytes(data: bytes) -> str:
    """The encoded CRC64/NVME of ``data``."""
    return encode(checksums.crc64nvme(data))


class ObjectChecksum:
    """The CRC64/NVME of one S3 object version, read a range at a time.

    ``etag`` is the ETag the object must still have (quoted or not; None: not checked);
    ``version_id`` pins the version when the bucket is versioned. Errors of the GETs
    (botocore's) are raised as they are, for the caller to classify; a ``PreconditionFailed`` (412)
    means the object changed since ``etag`` was read.
    """

    def __init__(self, client, bucket: str, key: str, size: int, etag: str | None,
                 version_id: str | None = None, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.client = client
        self.bucket, self.key, self.size = bucket, key, size
        self.etag = etag if etag is None or etag.startswith('"') else f'"{etag}"'
        self.version_id = version_id
        self.chunk_bytes = chunk_bytes
        self.offset = 0
        self._crc = 0

    @property
    def done(self) -> bool:
        return self.offset >= self.size

    def advance(self, budget_seconds: float | None = None) -> str | None:
        """Read on for about ``budget_seconds`` (at least one range; None: to the end).
        Returns the encoded checksum once the whole object was read, else None."""
        deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
        while not self.done:
            self._read_range()
            if deadline is not None and time.monotonic() >= deadline:
                break
        return encode(self._crc) if self.done else None

    def _read_range(self) -> None:
        start, last = self.offset, min(self.offset + self.chunk_bytes, self.size) - 1
        extra = {"VersionId": self.version_id} if self.version_id else {}
        if self.etag is not None:
            extra["IfMatch"] = self.etag
        answer = self.client.get_object(Bucket=self.bucket, Key=self.key,
                                        Range=f"bytes={start}-{last}", **extra)
        # A server that ignores Range answers the whole object (no Content-Range).
        expected = (last + 1 if answer.get("ContentRange") or start else self.size) - start
        body, read = answer["Body"], 0
        try:
            while chunk := body.read(1 << 20):
                self._crc = checksums.crc64nvme(chunk, self._crc)
                read += len(chunk)
        finally:
            body.close()
        if read != expected:
            # Not as long as it was said to be: the object changed under us.
            raise ObjectChanged(f"s3://{self.bucket}/{self.key}: {read} bytes read at "
                                f"offset {start} where {expected} were expected")
        self.offset = start + read


class ObjectChanged(Exception):
    """The object is not the version being read any more."""
