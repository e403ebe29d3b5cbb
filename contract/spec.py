"""The job spec: what the dispatcher hands the runner, and the audit trail of an import.

A spec is YAML on S3 at a key derived from the event (job id and the CTS transition id),
so a redelivered event finds the spec it wrote before. It never holds a secret:
credentials reach the runner through its environment.

The ``job`` part is seed 001's job-info structure plus ``user`` and ``namespace_prefix``;
:meth:`JobInfo.for_importer` is exactly the dict an importer's ``run_import`` receives.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
import yaml

from common.convert import StructureError, converter, structure

SPEC_VERSION = 1


class SpecError(ValueError):
    """The spec is unusable: not YAML, a missing or mistyped field, an unknown version."""


@attrs.frozen
class Output:
    """One output file of the CTS job: ``file`` starts with the bucket."""

    file: str
    crc64nvme: str

    @property
    def bucket(self) -> str:
        return self.file.split("/", 1)[0]

    @property
    def key(self) -> str:
        return self.file.split("/", 1)[1] if "/" in self.file else ""


@attrs.frozen
class JobInfo:
    """Seed 001's job information, plus the user and their table namespace prefix."""

    id: str
    outputs: tuple[Output, ...]
    image: str
    image_digest: str
    input_file_count: int
    output_file_count: int
    completion_time: datetime
    user: str
    namespace_prefix: str

    def for_importer(self) -> dict[str, Any]:
        """The ``job_info`` dict given to ``run_import`` (a fresh copy each call)."""
        return {
            "id": self.id,
            "outputs": [{"file": o.file, "crc64nvme": o.crc64nvme} for o in self.outputs],
            "image": self.image,
            "image_digest": self.image_digest,
            "input_file_count": self.input_file_count,
            "output_file_count": self.output_file_count,
            # seed 001: an ISO 8601 string
            "completion_time": self.completion_time.isoformat(),
            "user": self.user,
            "namespace_prefix": self.namespace_prefix,
        }


@attrs.frozen
class ImporterRef:
    """The importer the dispatcher chose; the runner checks it against its own registry."""

    name: str
    py_module: str
    importer_meta: dict[str, Any] = attrs.Factory(dict)
    executor_cores: int = 1


@attrs.frozen
class EventRef:
    """Where the event came from: its Kafka coordinates and the CTS transition."""

    topic: str
    partition: int
    offset: int
    trans_id: str
    time: datetime
    source: str = "cts"


@attrs.frozen
class JobSpec:
    """Version 1 of the spec. Add fields with defaults; bump the version to break."""

    job: JobInfo
    importer: ImporterRef
    event: EventRef
    args: tuple[str, ...] = ()
    version: int = SPEC_VERSION


def namespace_prefix(user: str) -> str:
    """The CDM user table namespace prefix: ``u_<user>__``."""
    return f"u_{user}__"


_converter = converter()


def unstructure(value: Any) -> Any:
    """A spec or any part of it as plain YAML/JSON data."""
    return _converter.unstructure(value)


def to_yaml(spec: JobSpec) -> str:
    """Serialize ``spec``; ``from_yaml(to_yaml(spec)) == spec``."""
    return yaml.safe_dump(_converter.unstructure(spec), sort_keys=False, allow_unicode=True)


def from_yaml(text: str | bytes) -> JobSpec:
    """Parse and validate a spec. Raises :class:`SpecError` naming the offending field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"spec is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise SpecError(f"spec must be a mapping, got {type(data).__name__}")
    version = data.get("version", SPEC_VERSION)
    if version != SPEC_VERSION:
        raise SpecError(f"spec version {version!r} is not supported (expected {SPEC_VERSION})")
    try:
        return structure(data, JobSpec, _converter)
    except StructureError as error:
        raise SpecError(f"invalid spec: {error}") from error
