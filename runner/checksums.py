"""Output integrity: each output's CRC64/NVME in S3 must be the one the CTS recorded; an S3
event's object must still be the one the dispatcher found when it wrote the spec."""

from __future__ import annotations

from collections.abc import Iterable

from botocore.exceptions import BotoCoreError, ClientError

from common.crc64nvme import ObjectChanged, ObjectChecksum
from common.faults import s3_error_code
from contract.spec import Output, S3Object
from runner.errors import BadDataError, BadSpecError, s3_failure


def verify_outputs(client, outputs: Iterable[Output]) -> None:
    """Compare S3's stored checksum of every output with the spec's.

    Raises :class:`BadDataError` for a missing object, a missing or different checksum;
    :class:`TemporaryFailure` when S3 cannot answer; :class:`BadSpecError` for an output
    path without a key.
    """
    for output in outputs:
        where = f"output s3://{output.file}"
        if not output.key:
            raise BadSpecError(f"{where}: expected <bucket>/<key>")
        try:
            head = client.head_object(Bucket=output.bucket, Key=output.key,
                                      ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as error:
            raise s3_failure(error, where, BadDataError) from error
        stored = head.get("ChecksumCRC64NVME")
        if stored is None:
            raise BadDataError(f"{where} has no CRC64NVME checksum in S3 to compare with the "
                               f"job's {output.crc64nvme}")
        if stored != output.crc64nvme:
            raise BadDataError(f"{where}: CRC64NVME in S3 is {stored}, the job recorded "
                               f"{output.crc64nvme}; the file changed after the job wrote it")


def verify_object(client, obj: S3Object, crc64nvme: str) -> str:
    """Check that the object is still the one of the spec: same version (when the spec
    has one), eTag, size and CRC64/NVME (S3's stored checksum, or computed by reading
    the object when S3 stores none). Returns where the checksum came from (``stored``
    or ``computed``).

    Raises :class:`BadDataError` naming what changed (or that the object is gone);
    :class:`ServiceUnavailable` when S3 cannot answer.
    """
    where = f"object s3://{obj.file}"
    try:
        head = client.head_object(Bucket=obj.bucket, Key=obj.key, ChecksumMode="ENABLED")
    except (ClientError, BotoCoreError) as error:
        raise s3_failure(error, where, BadDataError) from error
    found = {"version": head.get("VersionId"), "eTag": (head.get("ETag") or "").strip('"'),
             "size": head.get("ContentLength")}
    expected = {"version": obj.version_id, "eTag": obj.etag, "size": obj.size}
    changes = [f"{what} {expected[what]} -> {found[what]}" for what in expected
               if expected[what] is not None and expected[what] != found[what]]
    if changes:
        raise BadDataError(f"{where} changed since the event ({', '.join(changes)}); "
                           "a later upload has an event of its own")
    stored, source = head.get("ChecksumCRC64NVME"), "stored"
    if stored is None:
        source = "computed"
        reader = ObjectChecksum(client, obj.bucket, obj.key, obj.size, obj.etag,
                                obj.version_id)
        try:
            stored = reader.advance()
        except ObjectChanged as error:
            raise BadDataError(f"{where} changed while it was read: {error}") from error
        except (ClientError, BotoCoreError) as error:
            if s3_error_code(error) in ("412", "PreconditionFailed"):
                raise BadDataError(f"{where} changed while it was read") from error
            raise s3_failure(error, where, BadDataError) from error
    if stored != crc64nvme:
        raise BadDataError(f"{where} changed since the event: CRC64NVME ({source}) is "
                           f"{stored}, the spec recorded {crc64nvme}")
    return source
