"""Identifiers from outside (a job id, a CTS transition id) that become one path segment.

A job id goes into a CTS URL (``/admin/jobs/{job_id}``) and, with the transition id, into
an S3 key (``<base>/<job_id>/<trans_id>/spec.yaml``). Either use is safe only for a value
that is one segment: not empty, not ``.`` or ``..`` (which URL and key normalization turn
into another path), no control characters (which S3 refuses), encodable as UTF-8 (a JSON
string may hold a lone surrogate), and bounded, so the key stays under S3's 1024 bytes.
Other characters (``/`` included) are fine: they are percent-encoded where they are used.
"""

from __future__ import annotations

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
    if not isinstance(value, str):
        raise InvalidIdentifier(f"{field}: expected a string, got {type(value).__name__}")
    if value == "":
        raise InvalidIdentifier(f"{field}: must not be empty")
    if value in (".", ".."):
        raise InvalidIdentifier(f"{field}: {value!r} is not a usable path segment")
    for index, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidIdentifier(
                f"{field}: character {index} is a control character or a lone surrogate "
                f"(U+{ord(char):04X})")
    if len(encode_segment(value)) > MAX_ENCODED_BYTES:
        raise InvalidIdentifier(
            f"{field}: too long ({len(value)} characters; at most {MAX_ENCODED_BYTES} bytes "
            "once percent-encoded)")
    return value


def encode_segment(value: str) -> str:
    """``value`` percent-encoded as one segment (``/`` and ``%`` included)."""
    return urllib.parse.quote(value, safe="")
