"""Output integrity: each output's CRC64/NVME in S3 must be the one the CTS recorded."""

from __future__ import annotations

from collections.abc import Iterable

from botocore.exceptions import BotoCoreError, ClientError

from runner.errors import BadDataError, BadSpecError, s3_failure
from contract.spec import Output


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
