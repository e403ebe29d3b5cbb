"""Errors that decide the runner's exit code. Importers may raise the first two.

Importers written against the importer contract alone know none of these: they raise ``ValueError``
(a metadata key missing, no output of the expected name, a column missing) or let a
``KeyError`` out for a job they cannot import. Running such a job again gives the same
answer, so :func:`importer_outcome` counts them as bad data.

Importing this module (or ``runner``) does not import pyspark.
"""

from __future__ import annotations

from common.faults import Fault, one_line, s3_error_code, s3_fault
from contract.result import ExitCode, Status


class RunnerError(Exception):
    """An attempt that ends with a known exit code and status."""

    exit_code = ExitCode.FAILURE
    status = Status.FAILED


class BadDataError(RunnerError):
    """The job's output cannot be imported as it is: retrying will not help (exit 65).

    Raise it with a message a person can act on: which file, which row, which column.
    """

    exit_code = ExitCode.BAD_DATA
    status = Status.BAD_DATA


class TemporaryFailure(RunnerError):
    """Something outside the data failed (a service unreachable): retry later (exit 75)."""

    exit_code = ExitCode.TEMPORARY
    status = Status.TEMPORARY_FAILURE


class WriteConflict(RunnerError):
    """Another writer committed to the table first, in every run of the importer (exit 75,
    status ``write_conflict``): the import is fine and would commit on a quieter table.
    The attempt is recorded but not spent; the dispatcher runs it again after a back-off.

    The runner raises it itself after Delta's conflict errors (see
    :mod:`runner.conflicts`); an importer that commits through its own retry loop may
    raise it when that loop gives up.
    """

    exit_code = ExitCode.TEMPORARY
    status = Status.WRITE_CONFLICT


class ServiceUnavailable(RunnerError):
    """A service the runner needs (``s3``, ``metastore``, ``spark``) could not be reached
    (exit 69): the attempt is recorded but not spent, and the dispatcher waits for the
    service before launching again."""

    exit_code = ExitCode.UNAVAILABLE
    status = Status.INFRASTRUCTURE

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service = service


class BadSpecError(RunnerError):
    """The spec is unusable: unreadable, invalid, or naming an importer not registered
    for its image (exit 64)."""

    exit_code = ExitCode.BAD_SPEC
    status = Status.BAD_SPEC


#: What an importer raises for a job it cannot import, without knowing this project.
BAD_DATA_ERRORS = (ValueError, KeyError)


def importer_outcome(error: BaseException) -> tuple[Status, ExitCode]:
    """The status and exit code of an attempt whose importer raised ``error``: a
    :class:`RunnerError`'s own; a ``ValueError`` or ``KeyError`` is bad data (exit 65,
    not retried); anything else, ``SystemExit`` included, is a failure (exit 70)."""
    if isinstance(error, RunnerError):
        return error.status, error.exit_code
    if isinstance(error, BAD_DATA_ERRORS):
        return Status.BAD_DATA, ExitCode.BAD_DATA
    return Status.FAILED, ExitCode.FAILURE


def importer_message(error: BaseException) -> str:
    """The reason a result gives for ``error``: a bad-data error not of this module is
    named with its type (a ``KeyError``'s text is only the key)."""
    if isinstance(error, BAD_DATA_ERRORS) and not isinstance(error, RunnerError):
        return f"{type(error).__name__}: {error}"
    return str(error)


_MISSING = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}


def s3_failure(error: Exception, what: str, missing: type[RunnerError]) -> RunnerError:
    """Classify a boto3 error on ``what`` with :func:`common.faults.s3_fault`: a missing
    object or bucket is ``missing``; another fault of the request is ``missing`` too (S3
    refuses this spec's or job's own data); the infrastructure's is
    :class:`ServiceUnavailable`."""
    code = s3_error_code(error)
    detail = f"{code or type(error).__name__}: {one_line(error, 300)}"
    if code in _MISSING:
        return missing(f"{what} does not exist")
    if s3_fault(error) is Fault.EVENT:
        return missing(f"S3 refused {what}: {detail}")
    return ServiceUnavailable("s3", f"S3 failed on {what}: {detail}")
