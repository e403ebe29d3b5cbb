"""The result of one runner attempt, written as YAML next to the spec.

Every attempt ends with exactly one result file: the runner writes it, or, when the
runner was killed or timed out before it could, the dispatcher writes it on its behalf.
The result files of a spec are therefore its attempts, which survives dispatcher restarts
and rebalances; those with status ``infrastructure_failure`` or ``write_conflict`` are kept
for the audit but do not count against ``max_attempts`` (the event was not at fault).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs
import yaml

from common.convert import StructureError, converter, structure

RESULT_VERSION = 1


class ExitCode(enum.IntEnum):
    """The runner's exit codes (sysexits), contracts.md section 4."""

    OK = 0
    BAD_SPEC = 64       # EX_USAGE: the spec is unusable; do not retry
    BAD_DATA = 65       # EX_DATAERR: the data cannot be imported; do not retry
    UNAVAILABLE = 69    # EX_UNAVAILABLE: a service the runner needs (S3, the metastore,
                        # Spark) could not be reached: retry, without spending an attempt
    FAILURE = 70        # EX_SOFTWARE: the importer failed; may be retried
    TEMPORARY = 75      # EX_TEMPFAIL: a temporary failure; retry


class Status(enum.StrEnum):
    SUCCEEDED = "succeeded"
    BAD_SPEC = "bad_spec"
    BAD_DATA = "bad_data"
    TEMPORARY_FAILURE = "temporary_failure"
    FAILED = "failed"
    #: A service was unreachable (``service`` names it): recorded, but not counted
    #: against the importer's ``max_attempts``.
    INFRASTRUCTURE = "infrastructure_failure"
    #: Exit 75: every run of the importer lost its commit to another writer of the same
    #: table. Nothing is wrong with the event; not counted against ``max_attempts``.
    WRITE_CONFLICT = "write_conflict"
    KILLED = "killed"        # written by the dispatcher: the runner died by a signal
    TIMED_OUT = "timed_out"  # written by the dispatcher: killed after the importer's timeout


_STATUS_OF_EXIT: dict[int, Status] = {
    ExitCode.OK: Status.SUCCEEDED, ExitCode.BAD_SPEC: Status.BAD_SPEC,
    ExitCode.BAD_DATA: Status.BAD_DATA, ExitCode.TEMPORARY: Status.TEMPORARY_FAILURE,
    ExitCode.UNAVAILABLE: Status.INFRASTRUCTURE}


#: Attempts that say nothing about the event: a service it needed was down, or another
#: writer kept winning the race to commit to its table.
NOT_THE_EVENT_S = frozenset({Status.INFRASTRUCTURE, Status.WRITE_CONFLICT})
#: Verdicts about the event itself: running it again gives the same answer.
REFUSALS = frozenset({Status.BAD_SPEC, Status.BAD_DATA})


def counts_as_attempt(result: RunResult | None) -> bool:
    """Whether a recorded attempt spends one of the event's ``max_attempts``; an
    unreadable result file (None) does."""
    return result is None or result.status not in NOT_THE_EVENT_S


def status_for_exit_code(code: int) -> Status:
    """The status a runner exit code stands for; an unknown code is a failure."""
    return _STATUS_OF_EXIT.get(code, Status.FAILED)


@attrs.frozen
class DeltaCommit:
    """One Delta commit the import made: table, version, operation and its metrics."""

    table: str
    version: int
    operation: str
    metrics: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class RunResult:
    spec_uri: str
    job_id: str
    status: Status
    exit_code: int
    started_at: datetime
    ended_at: datetime
    error_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    delta_commits: tuple[DeltaCommit, ...] = ()
    written_by: str = "runner"
    #: With status ``infrastructure_failure``: which service (s3, metastore, spark,
    #: docker, kubernetes, launcher).
    service: str | None = None
    version: int = RESULT_VERSION


_converter = converter()


def to_yaml(result: RunResult) -> str:
    return yaml.safe_dump(_converter.unstructure(result), sort_keys=False, allow_unicode=True)


def from_yaml(text: str | bytes) -> RunResult:
    """Parse a result file; raise ``ValueError`` naming the bad field."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"result file is not valid YAML: {error}") from error
    try:
        return structure(data, RunResult, _converter)
    except StructureError as error:
        raise ValueError(f"invalid result file: {error}") from error
