"""CTS job-state messages from Kafka (docs/contracts.md, section 1).

A message is UTF-8 JSON ``{"job_id", "state", "time", "trans_id"}``. Fields beyond these
are ignored (a replayed DLQ message carries ``error_dlq`` and ``error_dlq_trace``; the CTS
may add fields), missing or mistyped ones make the message malformed, and so do ids that
are not one usable path segment (see :mod:`contract.identifiers`): they would become CTS
URLs and S3 keys.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import attrs
import orjson

from common.convert import converter, structure
from contract.identifiers import MAX_ENCODED_BYTES, check_segment


class JobState(enum.StrEnum):
    CREATED = "created"
    DOWNLOAD_SUBMITTED = "download_submitted"
    JOB_SUBMITTING = "job_submitting"
    JOB_SUBMITTED = "job_submitted"
    UPLOAD_SUBMITTING = "upload_submitting"
    UPLOAD_SUBMITTED = "upload_submitted"
    COMPLETE = "complete"
    CANCELING = "canceling"
    CANCELED = "canceled"
    ERROR_PROCESSING_SUBMITTING = "error_processing_submitting"
    ERROR_PROCESSING_SUBMITTED = "error_processing_submitted"
    ERROR = "error"


def _plain(value: object) -> bool:
    """check_segment's own first test, inlined (two ids per event at intake's speed): a
    short printable ASCII id that is not a dot segment is usable; the rest it decides."""
    return (type(value) is str and 0 < len(value) * 3 <= MAX_ENCODED_BYTES
            and value.isascii() and value.isprintable() and value not in (".", ".."))


def _segment(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not _plain(value):
        check_segment(attribute.name, value)


@attrs.frozen
class CtsEvent:
    job_id: str = attrs.field(validator=_segment)
    state: JobState
    time: datetime
    trans_id: str = attrs.field(validator=_segment)

    @property
    def actionable(self) -> bool:
        """Only a completed job leads to an import."""
        return self.state is JobState.COMPLETE


class MalformedMessage(ValueError):
    """The message cannot be understood; the message says why, in one line."""


_converter = converter(forbid_extra_keys=False)
_STATES = {state.value: state for state in JobState}
_new, _set = object.__new__, object.__setattr__
T = TypeVar("T")


def _checked_event(job_id: str, state: JobState, time: datetime, trans_id: str) -> CtsEvent:
    """The CtsEvent of fields its validators pass (both ids :func:`_plain`), built as its
    ``__init__`` builds a frozen instance (each slot set through ``object.__setattr__``)
    without running the validators again: half the cost, at intake's speed."""
    event = _new(CtsEvent)
    _set(event, "job_id", job_id)
    _set(event, "state", state)
    _set(event, "time", time)
    _set(event, "trans_id", trans_id)
    return event


def contained(parse: Callable[[bytes | None, int], T]) -> Callable[[bytes | None, int], T]:
    """``parse`` made to raise :class:`MalformedMessage` with the reason, and nothing
    else, whatever the bytes."""

    @functools.wraps(parse)
    def wrapper(value: bytes | None, max_bytes: int) -> T:
        try:
            return parse(value, max_bytes)
        except MalformedMessage:
            raise
        except Exception as error:  # deep nesting, odd numbers...: one message's problem
            raise MalformedMessage(f"message cannot be parsed: {type(error).__name__}: "
                                   f"{str(error)[:200]}") from error

    return wrapper


@contained
def parse(value: bytes | None, max_bytes: int) -> CtsEvent:
    """Parse a Kafka record value. Raises :class:`MalformedMessage` with the reason, and
    nothing else, whatever the bytes."""
    event = _fast(value, max_bytes)
    return event if event is not None else parse_reference(value, max_bytes)


#: A message with more brackets than this may nest deeper than :mod:`json` reads (its
#: limit is the interpreter's recursion limit, 1000, less the stack in use; orjson's is
#: 1024): it is left to the reference path, which decides as it always has.
_FAST_BRACKETS = 500


def _fast(value: bytes | None, max_bytes: int) -> CtsEvent | None:
    """The event of a usual message (UTF-8 JSON, an object, its four fields plainly right,
    see :func:`_usual`) decoded by orjson, several times faster than :mod:`json`; None
    for anything else, which :func:`parse_reference` then decides.

    This is the reference's event whenever it returns one: orjson refuses what
    :mod:`json` refuses (invalid UTF-8, control characters in strings, a lone surrogate
    escape; also NaN and Infinity, which :mod:`json` reads: those go to the reference),
    reads strings and duplicate keys (the last wins) alike, and differs otherwise only in
    values :func:`_usual` never looks at (an integer past 64 bits read as a float) or in
    nesting deeper than :data:`_FAST_BRACKETS` allows. The property tests compare the two
    on arbitrary input."""
    if value is None or len(value) > max_bytes or (  # (fewer bytes hold fewer brackets)
            len(value) > _FAST_BRACKETS
            and value.count(b"[") + value.count(b"{") > _FAST_BRACKETS):
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return _usual(data) if type(data) is dict else None


def parse_reference(value: bytes | None, max_bytes: int) -> CtsEvent:
    """What :func:`parse` decides, with :mod:`json`: every message :func:`_fast` leaves,
    and the reason of every malformed one."""
    data = json_object(value, max_bytes)
    event = _usual(data)
    if event is not None:
        return event
    try:
        return structure(data, CtsEvent, _converter)
    except ValueError as error:  # a StructureError naming the field, or an unknown state
        raise MalformedMessage(f"message does not fit the CTS event schema: {error}") from error


def _usual(data: dict) -> CtsEvent | None:
    """The event of a message whose four fields are plainly right (strings, a known state,
    an ISO 8601 time with its offset, usable ids), built without the converter: the same
    event it would build, at a fraction of the cost (most messages are acknowledged at
    intake's speed). None for anything else: the converter then says what is wrong."""
    job_id, state, time = data.get("job_id"), data.get("state"), data.get("time")
    trans_id = data.get("trans_id")
    if not (type(job_id) is str and type(state) is str and type(time) is str
            and type(trans_id) is str) or state not in _STATES:
        return None
    try:
        when = datetime.fromisoformat(time)
        # fromisoformat gives a fixed offset (never one that answers None) or no tzinfo.
        if when.tzinfo is None:
            return None
        if _plain(job_id) and _plain(trans_id):
            return _checked_event(job_id, _STATES[state], when, trans_id)
        return CtsEvent(job_id=job_id, state=_STATES[state], time=when, trans_id=trans_id)
    except ValueError:  # not ISO 8601, or an id the validators refuse
        return None


def json_object(value: bytes | None, max_bytes: int) -> dict:
    """A record value as a JSON object: present, at most ``max_bytes``, UTF-8, JSON, an
    object. Raises :class:`MalformedMessage` saying which of these it is not (and may
    raise a RecursionError for absurd nesting, which :func:`parse` turns into one)."""
    if value is None:
        raise MalformedMessage("message has no value")
    if len(value) > max_bytes:
        raise MalformedMessage(f"message is oversized: {len(value)} bytes, limit {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedMessage(f"message is not UTF-8: {error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedMessage(f"message is not JSON: {error}") from error
    except RecursionError as error:
        raise MalformedMessage("message is not usable JSON: nested too deeply") from error
    if not isinstance(data, dict):
        raise MalformedMessage(f"message must be a JSON object, got {type(data).__name__}")
    return data
