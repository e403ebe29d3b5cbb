"""CRC64/NVME as S3 writes it: base64 of the checksum's 8 big-endian bytes."""

from common.crc64nvme import encode, of_bytes


def test_the_encoding_is_the_one_s3_answers():
    # SeaweedFS answers ChecksumCRC64NVME D3gOhIHSoh8= for an object of these bytes.
    assert of_bytes(b"hello world\n") == "D3gOhIHSoh8="
    assert of_bytes(b"") == encode(0) == "AAAAAAAAAAA="
