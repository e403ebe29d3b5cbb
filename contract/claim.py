"""An attempt's claim: which dispatcher runs attempt N of a spec, until when.

Before it launches a runner, a dispatcher creates ``attempt-NNNN.yaml`` beside the spec,
only if it does not exist yet (a conditional put): of two dispatchers holding copies of one
job completion, one wins attempt N and the other waits for its outcome. The claim names
the result file the runner will write (``result-NNNN.yaml``), chosen before the launch. Its
owner renews the lease while the runner works; a claim whose lease ran out without a
result belongs to a dispatcher that stopped, and the next dispatcher takes the attempt
over (recorded in ``takeovers``) and launches it again, so the audit tells each attempt's
whole story, kills included.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
import yaml

from common.convert import StructureError, converter, structure

CLAIM_PREFIX = "attempt-"


@attrs.frozen
class Takeover:
    """A dispatcher took the attempt over from ``previous_owner``, whose lease had ended."""

    by: str
    at: datetime
    previous_owner: str


@attrs.frozen
class AttemptClaim:
    attempt: int
    owner: str                 # the dispatcher instance: host, process and start time
    claimed_at: datetime
    lease_until: datetime
    result_name: str           # the runner writes its result here, beside the spec
    takeovers: tuple[Takeover, ...] = ()
    version: int = 1


def claim_name(attempt: int) -> str:
    return f"{CLAIM_PREFIX}{attempt:04d}.yaml"


def result_name_for(attempt: int) -> str:
    """The result file of attempt ``attempt``, as chosen by the dispatcher."""
    return f"result-{attempt:04d}.yaml"


_converter = converter()


def to_yaml(claim: AttemptClaim) -> str:
    return yaml.safe_dump(_converter.unstructure(claim), sort_keys=False)


def from_yaml(text: str | bytes) -> AttemptClaim:
    """Parse a claim; raise ``ValueError`` naming the bad field."""
    try:
        data: Any = yaml.safe_load(text)
        return structure(data, AttemptClaim, _converter)
    except (yaml.YAMLError, StructureError) as error:
        raise ValueError(f"invalid attempt claim: {error}") from error
