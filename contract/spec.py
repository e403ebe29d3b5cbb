"""The job spec: what the dispatcher hands the runner, and the audit trail of an import.

A spec is YAML on S3 at a key derived from the event (job id and the CTS transition id,
or for an S3 notification the id derived from the object and its upload), so a
redelivered event finds the spec it wrote before. It never holds a secret: credentials
reach the runner through its environment.

The ``job`` part is seed 001's job-info structure plus ``user`` and ``namespace_prefix``;
for an S3 object-created event it also holds the ``object`` (bucket, key, size, eTag,
version, sequencer), and ``image`` and ``image_digest`` are null.
:meth:`JobInfo.for_importer` is exactly the dict an importer's ``run_import`` receives.

Version 1 grows only by fields with defaults: a spec written before (no ``object``, no
``event.source``) reads as the CTS spec it was.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import attrs
import yaml
from cattrs.gen import make_dict_unstructure_fn, override

from common.convert import StructureError, converter, structure
from contract.identifiers import check_bucket, check_object_key

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


def _bucket(instance: object, attribute: attrs.Attribute, value: str) -> None:
    check_bucket(attribute.name, value)


def _key(instance: object, attribute: attrs.Attribute, value: str) -> None:
    check_object_key(attribute.name, value)


def _not_negative(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


@attrs.frozen
class S3Object:
    """The object an S3 object-created event announced, as the dispatcher found it in S3.

    ``key`` is decoded (as stored, not URL-encoded). ``etag`` is without quotes.
    ``version_id`` is set for a versioned bucket, ``sequencer`` when the event had one.
    The runner checks that the object is still this one before the import."""

    bucket: str = attrs.field(validator=_bucket)
    key: str = attrs.field(validator=_key)
    size: int = attrs.field(validator=_not_negative)
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None

    @property
    def file(self) -> str:
        """The object's name as a job output names files: bucket first."""
        return f"{self.bucket}/{self.key}"


@attrs.frozen
class JobInfo:
    """Seed 001's job information, plus the user and their table namespace prefix.

    A CTS job has an ``image`` and ``image_digest`` and no ``object``; an S3 object has
    no image (both null) and its one output is the object."""

    id: str
    outputs: tuple[Output, ...]
    image: str | None
    image_digest: str | None
    input_file_count: int
    output_file_count: int
    completion_time: datetime
    user: str
    namespace_prefix: str
    object: S3Object | None = None

    @property
    def source(self) -> str:
        """``cts`` or ``s3``: which kind of event the job comes from."""
        return "cts" if self.object is None else "s3"

    def for_importer(self) -> dict[str, Any]:
        """The ``job_info`` dict given to ``run_import`` (a fresh copy each call). For an
        S3 object it also has ``source: "s3"`` and ``object``; a CTS job's is exactly
        seed 001's plus ``user`` and ``namespace_prefix``."""
        info: dict[str, Any] = {
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
        if self.object is not None:
            info["source"] = "s3"
            info["object"] = {"bucket": self.object.bucket, "key": self.object.key,
                              "size": self.object.size, "etag": self.object.etag,
                              "version_id": self.object.version_id,
                              "sequencer": self.object.sequencer}
        return info


@attrs.frozen
class ImporterRef:
    """The importer the dispatcher chose; the runner checks it against its own registry."""

    name: str
    py_module: str
    importer_meta: dict[str, Any] = attrs.Factory(dict)
    executor_cores: int = 1


@attrs.frozen
class EventRef:
    """Where the event came from: its Kafka coordinates and the CTS transition (for an
    S3 notification, ``trans_id`` identifies the upload: its sequencer, else its version
    id, else its eTag; ``source`` is ``s3``)."""

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

    def __attrs_post_init__(self) -> None:
        if self.event.source not in ("cts", "s3"):
            raise ValueError(f"event.source: expected cts or s3, got {self.event.source!r}")
        if self.event.source != self.job.source:
            raise ValueError(f"job.object: an event of source {self.event.source} "
                             + ("needs the object" if self.event.source == "s3"
                                else "has no object"))
        if self.job.object is not None and [o.file for o in self.job.outputs] != [
                self.job.object.file]:
            raise ValueError("job.outputs: an S3 object's job has the object as its one output")


#: A user name that may name a table namespace: letters, digits and ``_``, a letter first.
USER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")


def namespace_prefix(user: str) -> str:
    """The CDM user table namespace prefix: ``u_<user>__``."""
    return f"u_{user}__"


def plain_user(name: object) -> bool:
    """Whether ``name`` may be a job's user: it names the user's tables (``u_<user>__``)."""
    return isinstance(name, str) and USER_NAME.match(name) is not None


def _spec_converter():
    conv = converter()
    # A CTS job's spec is written exactly as before S3 events existed (no `object: null`),
    # so runners of an earlier release still read the specs of a newer dispatcher.
    conv.register_unstructure_hook(JobInfo, make_dict_unstructure_fn(
        JobInfo, conv, object=override(omit_if_default=True)))
    return conv


_converter = _spec_converter()


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
