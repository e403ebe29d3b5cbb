"""What counts as a credential when all we see is an environment variable's name."""

from __future__ import annotations

import re

# AWS_ACCESS_KEY_ID is an identifier, not a secret: it may appear in a log line.
_CREDENTIAL_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|PRIVATE", re.IGNORECASE)


def is_credential_name(name: str) -> bool:
    """True for names such as ``AWS_SECRET_ACCESS_KEY``, ``CSEP_METASTORE_PASSWORD``,
    ``CSEP_CTS_TOKEN``: their values must not reach a manifest, a spec, a result or a log."""
    return bool(_CREDENTIAL_NAME.search(name))
