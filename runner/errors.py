"""Errors that decide the runner's exit code. Importers may raise the first two.

Importing this module (or ``runner``) does not import pyspark.
"""

from __future__ import annotations

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


class BadSpecError(RunnerError):
    """The spec is unusable: unreadable, invalid, or naming an importer not registered
    for its image (exit 64)."""

    exit_code = ExitCode.BAD_SPEC
    status = Status.BAD_SPEC


_MISSING = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}


def s3_failure(error: Exception, what: str, missing: type[RunnerError]) -> RunnerError:
    """Classify a boto3 error on ``what``: a missing object or bucket is ``missing``;
    anything else (unreachable, refused, a 5xx) is a :class:`TemporaryFailure`."""
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    if code in _MISSING:
        return missing(f"{what} does not exist")
    return TemporaryFailure(f"S3 failed on {what}: {code or type(error).__name__}: {error}")
