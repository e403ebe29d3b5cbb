"""The stack's S3 is SeaweedFS: it keeps CRC64NVME checksums and refuses strangers."""

import base64
import uuid

import pytest
from awscrt import checksums
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError


def test_crc64nvme_round_trip(stack):
    body = b"genome\tcompleteness\nbin.1\t98.5\n"
    key = f"smoke/{uuid.uuid4().hex}.tsv"
    client = stack.s3.client()
    client.put_object(Bucket=stack.lake_bucket, Key=key, Body=body, ChecksumAlgorithm="CRC64NVME")
    head = client.head_object(Bucket=stack.lake_bucket, Key=key, ChecksumMode="ENABLED")
    expected = base64.b64encode(checksums.crc64nvme(body).to_bytes(8, "big")).decode()
    assert head["ChecksumCRC64NVME"] == expected


def test_anonymous_request_is_refused(stack):
    anonymous = stack.s3.client(config=Config(signature_version=UNSIGNED,
                                              s3={"addressing_style": "path"}))
    with pytest.raises(ClientError) as error:
        anonymous.list_objects_v2(Bucket=stack.lake_bucket)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] in (401, 403)


def test_wrong_secret_is_refused(stack):
    impostor = stack.s3.client(aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as error:
        impostor.put_object(Bucket=stack.lake_bucket, Key="smoke/impostor", Body=b"x")
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_an_object_s_checksum_is_read_in_ranges_and_a_replacement_is_noticed(stack):
    from common.crc64nvme import ObjectChecksum, of_bytes

    client = stack.s3.client()
    key = f"smoke/{uuid.uuid4().hex}/ranges.bin"
    body = bytes(range(256)) * 40  # 10240 bytes: 11 ranges of 1000
    put = client.put_object(Bucket=stack.lake_bucket, Key=key, Body=body)
    reader = ObjectChecksum(client, stack.lake_bucket, key, len(body), put["ETag"],
                            chunk_bytes=1000)
    turns = 0
    while (crc := reader.advance(0)) is None:  # one range per call, resumed each time
        turns += 1
    assert (crc, turns) == (of_bytes(body), 10)

    again = ObjectChecksum(client, stack.lake_bucket, key, len(body), put["ETag"],
                           chunk_bytes=1000)
    assert again.advance(0) is None
    client.put_object(Bucket=stack.lake_bucket, Key=key, Body=body[::-1])
    with pytest.raises(ClientError) as error:
        again.advance()
    assert error.value.response["Error"]["Code"] == "PreconditionFailed"
    empty = f"smoke/{uuid.uuid4().hex}/empty"
    put = client.put_object(Bucket=stack.lake_bucket, Key=empty, Body=b"")
    assert ObjectChecksum(client, stack.lake_bucket, empty, 0, put["ETag"]).advance() == (
        "AAAAAAAAAAA=")
