"""One attempt at one spec: check it, verify the outputs, run the importer, report.

Every step that refuses raises a :class:`~runner.errors.RunnerError` whose class fixes
the exit code; from the importer, a ``ValueError`` or ``KeyError`` is bad data (exit 65)
and any other exception exit 70 (:func:`~runner.errors.importer_outcome`), unless Spark
could not start or a service the runner needs no longer accepts connections (see
:mod:`runner.probes`): then the attempt is the infrastructure's, exit 69. Spark starts
only when the importer asks for it, so a refused spec costs no JVM. Only the spec's
importer module is imported: another importer's missing dependency does not stop it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from common.faults import causes, one_line
from common.redaction import Redactor
from common.s3 import s3_client
from contract.result import DeltaCommit, ExitCode, IcebergSnapshot, RunResult, Status
from contract.spec import JobSpec, SpecError, from_yaml
from registry import ImporterEntry, Registry, RegistryError, load_module
from runner import catalog, logs, probes
from runner.checksums import verify_object, verify_outputs
from runner.commits import MarkedSpark
from runner.conflicts import run_until_committed
from runner.errors import (
    BadDataError,
    BadSpecError,
    RunnerError,
    ServiceUnavailable,
    importer_message,
    importer_outcome,
)
from runner.locations import SpecLocation
from runner.logs import log
from runner.spark import SparkSettings, preload, spark_factory

_TRACEBACK_LIMIT = 20_000


def run_attempt(location: SpecLocation, environ: Mapping[str, str] = os.environ) -> RunResult:
    """Run the spec at ``location`` once and describe the outcome. Never raises for a
    failure of the spec, the data or the importer: those are in the result."""
    started_at, started = _now(), time.monotonic()
    job_id = "unknown"
    try:
        settings = SparkSettings.from_env(environ)
    except ValueError as unusable:
        # The deployment's fault, not the event's: the attempt waits, as for a service
        # that is down, until the runner's settings are mended.
        log.error("the runner's settings are unusable: %s", unusable)
        return RunResult(
            spec_uri=location.uri, job_id=job_id, status=Status.INFRASTRUCTURE,
            exit_code=int(ExitCode.UNAVAILABLE), started_at=started_at, ended_at=_now(),
            error_type="RunnerMisconfigured",
            message=f"the runner's settings are unusable: {unusable}", service="runner")
    preload(settings)
    spark_failures: list[BaseException] = []
    s3 = functools.cache(lambda: s3_client(environ))  # made on first use, then shared
    spec: JobSpec | None = None
    spark = MarkedSpark(_guarded(spark_factory(settings,
                                               user=lambda: spec.job.user if spec else None),
                                 spark_failures),
                        marker=f"csep-attempt:{uuid.uuid4()}", s3=s3,
                        iceberg=settings.is_iceberg)
    status, exit_code = Status.SUCCEEDED, ExitCode.OK
    error: Exception | None = None
    in_importer = False
    commits: tuple[DeltaCommit, ...] = ()
    snapshots: tuple[IcebergSnapshot, ...] = ()
    try:
        spec = _parse(location.read(), location.uri)
        job_id = logs.context.job_id = spec.job.id
        entry = _registered(spec, environ)
        module = _loaded(entry)
        meta = dict(entry.importer_meta)
        if spec.job.object is None:
            log.info("spec read: image %s, importer %s", spec.job.image,
                     spec.importer.py_module)
            verify_outputs(s3(), spec.job.outputs)
            log.info("%d output checksum(s) verified", len(spec.job.outputs))
        else:
            log.info("spec read: object s3://%s, importer %s", spec.job.object.file,
                     spec.importer.py_module)
            checksum = verify_object(s3(), spec.job.object,
                                     spec.job.outputs[0].crc64nvme)
            log.info("the object is unchanged since the event (size, eTag, %s CRC64NVME)",
                     checksum)
        # The runner's stdout is reserved for the result (SPEC "-").
        in_importer = True
        job = spec.job
        with contextlib.redirect_stdout(sys.stderr):
            # Each run gets its own copies: a conflict runs the importer again.
            run_until_committed(lambda: module.run_import(
                spark.get_spark, _job_info(job, settings), copy.deepcopy(meta)),
                time_left=_time_left(entry.settings.timeout_seconds, started))
    except RunnerError as caught:
        status, exit_code, error = caught.status, caught.exit_code, caught
    except Exception as caught:  # from the importer: its verdict on the data, or a bug
        status, exit_code = (importer_outcome(caught) if in_importer
                             else (Status.FAILED, ExitCode.FAILURE))
        error = caught
    except SystemExit as caught:  # sys.exit() in an importer must not pass for success
        status, exit_code = Status.FAILED, ExitCode.FAILURE
        error = RuntimeError(f"the importer called sys.exit({caught.code!r})")
        error.__cause__ = caught
    finally:
        if spec is not None and settings.is_iceberg:
            snapshots = spark.finish_iceberg()
        elif spec is not None:
            commits = spark.finish(spec.job.namespace_prefix)
    if error is not None and not isinstance(error, (BadSpecError, BadDataError,
                                                    ServiceUnavailable)):
        unavailable = _unavailable(settings, spark_failures, error)
        if unavailable is not None:
            status, exit_code, error = unavailable.status, unavailable.exit_code, unavailable
    redact = Redactor.from_env(environ)
    if error is not None:
        log.error("%s: %s: %s", status.value, type(error).__name__, redact(str(error)))
    else:
        log.info("import succeeded with %s", f"{len(snapshots)} Iceberg snapshot(s)"
                 if settings.is_iceberg else f"{len(commits)} Delta commit(s)")
    return RunResult(
        spec_uri=location.uri, job_id=job_id, status=status, exit_code=int(exit_code),
        started_at=started_at, ended_at=_now(),
        error_type=type(error).__name__ if error else None,
        message=redact(importer_message(error)) if error else None,
        # The runner's own refusals are explained by their message alone.
        traceback=redact(_traceback(error)) if error and in_importer else None,
        delta_commits=commits,
        iceberg_snapshots=snapshots,
        service=error.service if isinstance(error, ServiceUnavailable) else None)


def _job_info(job, settings: SparkSettings) -> dict:
    """The importer's ``job_info``: with Iceberg, tables are named in the user's own
    catalog, so there is no namespace prefix."""
    info = job.for_importer()
    if settings.is_iceberg:
        info["namespace_prefix"] = ""
    return info


def _guarded(factory, failures: list[BaseException]):
    """``factory`` whose failures are remembered: a Spark that cannot start is the
    infrastructure's fault, even when the importer wraps the error in its own."""

    def get_spark(**kwargs):
        try:
            return factory(**kwargs)
        except Exception as error:
            failures.append(error)
            raise ServiceUnavailable(
                "spark", f"Spark could not start: {type(error).__name__}: "
                         f"{one_line(error, 300)}") from error

    return get_spark


def _unavailable(settings: SparkSettings, spark_failures: list[BaseException],
                 error: BaseException) -> ServiceUnavailable | None:
    """The infrastructure failure behind ``error``, if there is one."""
    if spark_failures:
        cause = spark_failures[0]
        return ServiceUnavailable("spark", f"Spark could not start: {type(cause).__name__}: "
                                           f"{one_line(cause, 300)}")
    refused = catalog.refusal(settings)
    if refused is not None:
        return ServiceUnavailable("catalog", f"Iceberg catalog: {refused}; the import failed "
                                             f"with {type(error).__name__}: "
                                             f"{one_line(error, 300)}")
    down = probes.unreachable(settings)
    if down is not None:
        service, reason = down
        return ServiceUnavailable(service, f"{service} unreachable ({reason}); the import "
                                           f"failed with {type(error).__name__}: "
                                           f"{one_line(error, 300)}")
    if "Py4JNetworkError" in {type(e).__name__ for e in causes(error)}:
        return ServiceUnavailable("spark", f"the Spark driver went away: {one_line(error, 300)}")
    return None


def _parse(text: str, uri: str) -> JobSpec:
    try:
        return from_yaml(text)
    except SpecError as error:
        raise BadSpecError(f"{uri}: {error}") from error


def _time_left(timeout_seconds: float | None, since: float) -> Callable[[], float] | None:
    """Seconds left of the importer's ``timeout_seconds`` counted from ``since`` (the
    attempt's start; the dispatcher counts from the launch, a little earlier), after which
    the dispatcher kills the runner; None without a timeout."""
    if timeout_seconds is None:
        return None
    deadline = since + timeout_seconds
    return lambda: deadline - time.monotonic()


def _loaded(entry: ImporterEntry):
    """The importer's module, imported; a module that cannot be (a dependency missing
    from this runner, named; an error while importing it) fails the attempt (exit 70:
    a runner deployed with the dependency imports it)."""
    try:
        return load_module(entry)
    except ValueError as error:
        raise RunnerError(f"importer {entry.name!r} cannot run here: {error}") from error


def _registered(spec: JobSpec, environ: Mapping[str, str]) -> ImporterEntry:
    """The importer this runner's registry lists for the spec's
    image (an S3 object: among those routing its bucket and key). A spec naming another
    importer, or an image or object with none, is refused: a spec cannot choose the code
    that runs. The registry's modules are located, not imported (:func:`_loaded` imports
    the one that runs)."""
    try:
        registry = Registry.load(check="find", environ=environ)
    except RegistryError as error:
        raise RunnerError(f"the runner's importer registry is broken: {error}") from error
    named = (spec.importer.name, spec.importer.py_module)
    if spec.job.object is not None:
        what = f"object s3://{spec.job.object.file}"
        routed = registry.for_object(spec.job.object.bucket, spec.job.object.key)
        entry = next((e for e in routed if (e.name, e.py_module) == named), None)
        if entry is None:
            raise BadSpecError(
                f"the spec names importer {named[0]!r} ({named[1]}) but no importer of that "
                f"name routes {what}" + (": " + ", ".join(
                    f"{e.name!r} ({e.py_module}) in {e.source}" for e in routed)
                    if routed else ": none does"))
    elif spec.job.image is None:
        raise BadSpecError("the spec's job has neither an image nor an S3 object")
    else:
        what = f"image {spec.job.image!r}"
        entry = registry.for_image(spec.job.image)
        if entry is None:
            raise BadSpecError(f"no importer is registered for {what}")
        if named != (entry.name, entry.py_module):
            raise BadSpecError(
                f"the spec names importer {named[0]!r} ({named[1]}) but {what} is "
                f"registered to {entry.name!r} ({entry.py_module}) in {entry.source}")
    if spec.importer.importer_meta != entry.importer_meta:
        log.warning("the spec's importer_meta differs from the registry's (%s); "
                    "running with the registry's", entry.source)
    return entry


def _traceback(error: BaseException) -> str:
    text = "".join(traceback.format_exception(error))
    return text if len(text) <= _TRACEBACK_LIMIT else "...\n" + text[-_TRACEBACK_LIMIT:]


def _now() -> datetime:
    return datetime.now(UTC)
