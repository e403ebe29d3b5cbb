"""The CTS admin API client (contracts.md section 2) and the job document -> job spec map.

Errors are classified for the loop: "no such job" (appcode 40040) and other 4xx answers are
:class:`~dispatcher.errors.EventRejected`; 5xx answers, timeouts and connection errors are
:class:`~dispatcher.errors.InfrastructureError`. 401 and 403 are infrastructure too: a bad
admin token fails every event alike, and dead-lettering them all would flood the DLQ.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import attrs
import requests

from common.convert import StructureError, converter, structure
from dispatcher.errors import EventRejected, InfrastructureError
from contract.spec import EventRef, ImporterRef, JobInfo, JobSpec, Output, namespace_prefix

NO_SUCH_JOB = 40040
META_START = "cse_event_processing_start"
META_COMPLETE = "cse_event_processing_complete"
META_ERROR = "cse_event_processing_error"
META_NO_OPERATION = "cse_event_processing_no_operation"


class JobNotFound(EventRejected):
    """The CTS has no job with this id (appcode 40040)."""


class CtsClient:
    """A requests session with the admin token; one instance per dispatcher."""

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The job document. Raises JobNotFound, EventRejected or InfrastructureError."""
        return self._request("GET", f"/admin/jobs/{job_id}", job_id)

    def set_meta(self, job_id: str, key: str) -> None:
        """Record ``key`` = now on the job's admin meta (processing start/complete/...)."""
        now = datetime.now(timezone.utc).isoformat()
        self._request("PUT", f"/admin/jobs/{job_id}/meta", job_id,
                      json={"set_fields": {key: now}, "unset_keys": []})

    def _request(self, method: str, path: str, job_id: str, **kwargs: Any) -> dict[str, Any]:
        where = f"CTS {method} {path}"
        try:
            response = self._session.request(method, self.url + requests.utils.quote(path),
                                             timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise InfrastructureError(f"{where}: {type(error).__name__}: {error}", "cts") from error
        if response.ok:
            try:
                return response.json()
            except ValueError as error:
                raise InfrastructureError(f"{where}: answer is not JSON", "cts") from error
        detail = _error_detail(response)
        message = f"{where}: HTTP {response.status_code}: {detail.get('message', response.reason)}"
        if response.status_code >= 500 or response.status_code in (401, 403, 408, 429):
            raise InfrastructureError(message, "cts")
        if detail.get("appcode") == NO_SUCH_JOB:
            raise JobNotFound(f"CTS has no job {job_id!r} (appcode {NO_SUCH_JOB})")
        raise EventRejected(message)


def _error_detail(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
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
        # CTS arguments may be structured (e.g. input-file placeholders): keep them as JSON.
        args = tuple(a if isinstance(a, str) else json.dumps(a, sort_keys=True)
                     for a in self.job_input.params.args)
        return JobSpec(job=info, importer=importer, event=event, args=args)


_converter = converter(forbid_extra_keys=False)


def parse_job(doc: Any) -> CtsJob:
    """Structure a job document. Raises EventRejected naming the unusable field."""
    try:
        return structure(doc, CtsJob, _converter)
    except StructureError as error:
        job_id = doc.get("id") if isinstance(doc, dict) else None
        raise EventRejected(f"CTS job document {job_id!r} is unusable: {error}") from error
