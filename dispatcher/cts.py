"""The CTS admin API client (contracts.md section 2) and the job document -> job spec map.

Failures are :class:`~common.faults.ServiceFailure` of service ``cts``, classified by the
table in :mod:`common.faults`: "no such job" (appcode 40040) and other 4xx answers are the
event's fault; 5xx, 401/403 (a bad admin token fails every event alike), timeouts and
connection errors are the infrastructure's.

The admin token is sent only to ``{root}/admin/jobs/{id}`` and ``{root}/admin/jobs/{id}/meta``
with the id percent-encoded as one path segment, and every request has a total deadline
(a CTS that accepts connections and then trickles, or never answers, cannot hold the loop).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import attrs
import requests

from common.convert import converter, structure
from common.faults import Fault, ServiceFailure, http_fault, one_line, requests_fault
from contract.identifiers import check_segment, encode_segment
from contract.spec import (
    EventRef,
    ImporterRef,
    JobInfo,
    JobSpec,
    Output,
    namespace_prefix,
    plain_user,
)
from dispatcher.errors import EventRejected

NO_SUCH_JOB = 40040
META_START = "cse_event_processing_start"
META_COMPLETE = "cse_event_processing_complete"
META_ERROR = "cse_event_processing_error"
META_NO_OPERATION = "cse_event_processing_no_operation"
#: A job document or error larger than this is not read (a CTS answer is a few KB).
MAX_ANSWER_BYTES = 4 << 20


class JobNotFound(ServiceFailure):
    """The CTS has no job with this id (appcode 40040)."""


class CtsClient:
    """A requests session with the admin token; one instance per dispatcher.

    ``timeout`` is the total deadline of one request, connection included.
    """

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def get_job(self, job_id: str) -> Any:
        """The job document (parsed JSON). Raises ServiceFailure (JobNotFound for 40040)."""
        return self._request("GET", _job_path(job_id), job_id)

    def set_meta(self, job_id: str, key: str) -> None:
        """Record ``key`` = now on the job's admin meta (processing start/complete/...)."""
        now = datetime.now(timezone.utc).isoformat()
        self._request("PUT", _job_path(job_id) + "/meta", job_id,
                      json={"set_fields": {key: now}, "unset_keys": []})

    def _request(self, method: str, path: str, job_id: str, **kwargs: Any) -> Any:
        where = f"CTS {method} {path}"
        deadline = time.monotonic() + self.timeout
        try:
            with self._session.request(method, self.url + path, stream=True,
                                       timeout=(min(self.timeout, 5.0), self.timeout),
                                       **kwargs) as response:
                body = _read(response, deadline, where)
        except ServiceFailure:
            raise
        except Exception as error:
            raise ServiceFailure("cts", requests_fault(error),
                                 f"{where}: {type(error).__name__}: {one_line(error)}",
                                 type(error).__name__) from error
        if response.ok:
            try:
                return json.loads(body)
            except (ValueError, RecursionError) as error:
                # A proxy's error page, a truncated body: not this job's doing.
                raise ServiceFailure("cts", Fault.INFRASTRUCTURE,
                                     f"{where}: HTTP {response.status_code} answer is not JSON",
                                     "UnexpectedAnswer") from error
        detail = _error_detail(body)
        message = (f"{where}: HTTP {response.status_code}: "
                   f"{one_line(detail.get('message') or response.reason or '', 300)}")
        if detail.get("appcode") == NO_SUCH_JOB and response.status_code == 404:
            raise JobNotFound("cts", Fault.EVENT,
                              f"CTS has no job {job_id!r} (appcode {NO_SUCH_JOB})", "JobNotFound")
        raise ServiceFailure("cts", http_fault(response.status_code), message,
                             f"HTTP {response.status_code}")


def _job_path(job_id: str) -> str:
    """``/admin/jobs/{job_id}`` with the id as one percent-encoded segment."""
    try:
        check_segment("job_id", job_id)
    except ValueError as error:
        raise EventRejected(f"job id not usable in a CTS URL: {error}") from error
    return f"/admin/jobs/{encode_segment(job_id)}"


def _read(response: requests.Response, deadline: float, where: str) -> bytes:
    """The body, read within the request's deadline and size bound."""
    chunks, size = [], 0
    for chunk in response.iter_content(65536):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise ServiceFailure("cts", Fault.INFRASTRUCTURE,
                                 f"{where}: answer larger than {MAX_ANSWER_BYTES} bytes",
                                 "UnexpectedAnswer")
        if time.monotonic() > deadline:
            raise ServiceFailure("cts", Fault.INFRASTRUCTURE,
                                 f"{where}: no complete answer within the deadline", "Timeout")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_detail(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


# -- the job document, as far as the dispatcher reads it ----------------------------------

@attrs.frozen
class _Image:
    name: str
    digest: str


@attrs.frozen
class _Params:
    args: tuple[Any, ...] = ()


@attrs.frozen
class _JobInput:
    params: _Params = _Params()


@attrs.frozen
class _Transition:
    state: str
    time: datetime


@attrs.frozen
class CtsJob:
    id: str
    user: str
    image: _Image
    outputs: tuple[Output, ...]
    input_file_count: int
    output_file_count: int
    transition_times: tuple[_Transition, ...]
    job_input: _JobInput = _JobInput()

    @property
    def completion_time(self) -> datetime | None:
        """The time of the last ``complete`` transition (a job may be re-completed)."""
        times = [t.time for t in self.transition_times if t.state == "complete"]
        return times[-1] if times else None

    def to_spec(self, importer: ImporterRef, event: EventRef) -> JobSpec:
        """The job spec for this job. Raises EventRejected if the job never completed."""
        if self.completion_time is None:
            raise EventRejected(f"CTS job {self.id!r} has no 'complete' transition")
        info = JobInfo(
            id=self.id, outputs=self.outputs, image=self.image.name,
            image_digest=self.image.digest, input_file_count=self.input_file_count,
            output_file_count=self.output_file_count, completion_time=self.completion_time,
            user=self.user, namespace_prefix=namespace_prefix(self.user))
        return JobSpec(job=info, importer=importer, event=event, args=self._args())

    def _args(self) -> tuple[str, ...]:
        # CTS arguments may be structured (e.g. input-file placeholders): keep them as JSON.
        args = []
        for index, arg in enumerate(self.job_input.params.args):
            try:
                args.append(arg if isinstance(arg, str) else json.dumps(arg, sort_keys=True))
            except (TypeError, ValueError, RecursionError) as error:
                raise EventRejected(f"CTS job {self.id!r}: argument {index} cannot be kept "
                                    f"in the spec: {type(error).__name__}") from error
        return tuple(args)


_converter = converter(forbid_extra_keys=False)


def parse_job(doc: Any, job_id: str) -> CtsJob:
    """Structure the job document the CTS returned for ``job_id``. Raises EventRejected
    naming the unusable field, and nothing else, whatever the document."""
    try:
        job = structure(doc, CtsJob, _converter)
    except Exception as error:  # a StructureError naming the field, deep nesting...
        raise EventRejected(f"CTS job document {job_id!r} is unusable: "
                            f"{one_line(error, 300)}") from error
    if job.id != job_id:
        raise EventRejected(f"CTS answered job {job.id[:100]!r} when asked for {job_id!r}")
    if not plain_user(job.user):
        # The user names the job's tables (u_<user>__...): only a plain name may.
        raise EventRejected(f"CTS job {job_id!r}: user {job.user[:100]!r} cannot name a "
                            "table namespace (expected letters, digits and _)")
    return job
