"""Identifiers from outside: a job id or CTS transition id that becomes one path segment,
and the bucket and key of an S3 object an event names.

A job id goes into a CTS URL (``/admin/jobs/{job_id}``) and, with the transition id, into
an S3 key (``<base>/<job_id>/<trans_id>/spec.yaml``). Either use is safe only for a value
that is one segment: not empty, not ``.`` or ``..`` (which URL and key normalization turn
into another path), no control characters (which S3 refuses), encodable as UTF-8 (a JSON
string may hold a lone surrogate), and bounded, so the key stays under S3's 1024 bytes.
Other characters (``/`` included) are fine: they are percent-encoded where they are used.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse

#: Each of the two ids may use at most this many UTF-8 bytes once percent-encoded; with
#: the store's prefix and file name the key stays well under S3's 1024-byte limit.
MAX_ENCODED_BYTES = 300


class InvalidIdentifier(ValueError):
    """The value cannot be used as a path segment; the message says why."""


def check_segment(field: str, value: str) -> str:
    """Return ``value`` if it is usable as one path segment, else raise
    :class:`InvalidIdentifier` naming ``field`` and the reason."""
    if (type(value) is str and 0 < len(value) * 3 <= MAX_ENCODED_BYTES and value.isascii()
            and value.isprintable() and value not in (".", "..")):
        return value  # the usual id, in one test: short printable ASCII, not a dot segment
    _check_text(field, value)
    if value in (".", ".."):
        raise InvalidIdentifier(f"{field}: {value!r} is not a usable path segment")
    # Percent-encoding makes each character at most 3 ASCII bytes (12 for one of 4 UTF-8
    # bytes); a short ASCII value cannot exceed the bound, so most skip the encoding.
    if (len(value) * 3 > MAX_ENCODED_BYTES or not value.isascii()) and \
            len(encode_segment(value)) > MAX_ENCODED_BYTES:
        raise InvalidIdentifier(
            f"{field}: too long ({len(value)} characters; at most {MAX_ENCODED_BYTES} bytes "
            "once percent-encoded)")
    return value


def _check_text(field: str, value: str) -> None:
    """A non-empty string without control characters (NUL included) or lone surrogates:
    what both a path segment and an object key must be."""
    if not isinstance(value, str):
        raise InvalidIdentifier(f"{field}: expected a string, got {type(value).__name__}")
    if value == "":
        raise InvalidIdentifier(f"{field}: must not be empty")
    if value.isascii() and value.isprintable():
        return  # the usual id: no control character (ASCII's are not printable), no surrogate
    for index, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidIdentifier(
                f"{field}: character {index} is a control character or a lone surrogate "
                f"(U+{ord(char):04X})")


def encode_segment(value: str) -> str:
    """``value`` percent-encoded as one segment (``/`` and ``%`` included)."""
    return urllib.parse.quote(value, safe="")


#: S3's limit on an object key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
# S3's rules for a bucket name (3-63 lowercase letters, digits, dots and hyphens, starting
# and ending with a letter or digit), as MinIO, Ceph and AWS enforce them.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_bucket(field: str, value: str) -> str:
    """Return ``value`` if it is a valid S3 bucket name, else raise
    :class:`InvalidIdentifier` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidIdentifier(f"{field}: expected a string, got {type(value).__name__}")
    if not _BUCKET.match(value) or ".." in value:
        raise InvalidIdentifier(f"{field}: {value[:80]!r} is not a valid S3 bucket name")
    return value


def check_object_key(field: str, value: str) -> str:
    """Return ``value`` if it can name an S3 object (decoded, as the object is stored):
    not empty, no control characters (NUL included) or lone surrogates, at most
    :data:`MAX_KEY_BYTES` bytes of UTF-8. Else raise :class:`InvalidIdentifier`."""
    _check_text(field, value)
    if len(value.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidIdentifier(f"{field}: longer than S3's {MAX_KEY_BYTES} bytes")
    return value
