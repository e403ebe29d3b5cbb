"""Container image references: the name the registry keys on, without tag or digest.

A CTS job names its image as ``name``, ``name:tag``, ``name@sha256:...`` or
``name:tag@sha256:...``; the registry maps only the ``name`` part, so every tag and
digest of an image runs the same importer (seed 001). The name may start with a
registry host and port (``localhost:5000/tools/checkm2``): a colon is a tag only
after the last slash.
"""

from __future__ import annotations

import re

# The distribution reference grammar for a name: an optional host[:port], then
# lowercase path components separated by slashes.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_HOST}?{_COMPONENT}(?:/{_COMPONENT})*$")


def image_name(reference: str) -> str:
    """Strip the tag and digest from an image reference.

    ``ghcr.io/kbasetest/cdm_checkm2:0.3.0@sha256:ab..`` -> ``ghcr.io/kbasetest/cdm_checkm2``;
    ``localhost:5000/x:1`` -> ``localhost:5000/x``. Does not validate the name.
    """
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def name_problem(image: str) -> str | None:
    """Why ``image`` is not a bare image name, or None if it is one."""
    if "@" in image:
        return f"{image!r} has a digest; give the image name only (e.g. {image_name(image)!r})"
    if image_name(image) != image:
        return f"{image!r} has a tag; give the image name only (e.g. {image_name(image)!r})"
    if not _NAME.match(image):
        return f"{image!r} is not a valid image name (lowercase path, optional host[:port]/)"
    return None
