"""Strict cattrs structuring and one-line error messages that name the field.

Data crossing a boundary (a CTS message, a job spec, a config file, an importer YAML)
is structured into frozen attrs classes with :func:`converter`. Unlike cattrs' default,
it does not coerce: ``1`` is not a string, ``"3"`` and ``True`` are not integers.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import cattrs
from cattrs.errors import ForbiddenExtraKeysError


class StructureError(ValueError):
    """Input that does not fit its schema; the message names every bad field."""


def positive(instance: Any, attribute: Any, value: float | int | None) -> None:
    """attrs validator: ``value`` is None or greater than zero."""
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _strict(kind: type, *, allow: tuple[type, ...] = ()) -> Any:
    accepted = (kind, *allow)

    def structure(value: Any, _: type) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got bool")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    return structure


def _datetime(value: Any, _: type) -> datetime:
    # ISO 8601 text (JSON, quoted YAML) or a YAML timestamp; a time without a zone is
    # ambiguous across hosts, so it is refused rather than guessed.
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected an ISO 8601 time, got {value[:40]!r}") from None
    if not isinstance(value, datetime):
        raise TypeError(f"expected an ISO 8601 time, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("expected a time with a UTC offset (e.g. +00:00 or Z)")
    return value


def converter(*, forbid_extra_keys: bool = True) -> cattrs.Converter:
    """A converter that refuses unknown keys (by default) and mistyped scalars."""
    conv = cattrs.Converter(forbid_extra_keys=forbid_extra_keys)
    for scalar, allow in ((str, ()), (int, ()), (float, (int,)), (bool, ())):
        conv.register_structure_hook(scalar, _strict(scalar, allow=allow))
    # More specific than str/int in the MRO, so enums are built as members again.
    for kind in (enum.Enum, enum.StrEnum, enum.IntEnum):
        conv.register_structure_hook(kind, lambda value, cls: cls(value))
    # Plain values in YAML/JSON (str/int enums would otherwise pass through as members).
    for kind in (enum.Enum, enum.StrEnum, enum.IntEnum):
        conv.register_unstructure_hook(kind, lambda member: member.value)
    # Times cross every boundary as ISO 8601 text and are datetime values inside.
    conv.register_structure_hook(datetime, _datetime)
    conv.register_unstructure_hook(datetime, lambda value: value.isoformat())
    return conv


def _format(error: BaseException, kind: type | None) -> str:
    # A validator's ValueError says what was wrong; cattrs' default drops its text.
    if kind is datetime and str(error):
        return str(error)
    if kind is None and isinstance(error, ValueError) and str(error):
        return f"invalid value ({error})"
    return cattrs.v.format_exception(error, kind)


def describe(error: Exception, at: str = "") -> str:
    """One line naming each bad field, e.g. ``job.outputs[0].file: required field missing``;
    the paths start with ``at`` (the data's own path in a larger document), if given."""
    if isinstance(error, ForbiddenExtraKeysError):
        return (f"{at + ': ' if at else ''}unexpected field(s): "
                f"{', '.join(sorted(error.extra_fields))}")
    if isinstance(error, cattrs.BaseValidationError):
        parts = []
        for message in cattrs.transform_error(error, path="$", format_exception=_format):
            text, _, path = message.rpartition(" @ ")
            path = path.removeprefix("$").lstrip(".")
            if not path and text.startswith("invalid value (") and text.endswith(")"):
                # A class-level validator names its field itself.
                parts.append(f"{at + ': ' if at else ''}{text[len('invalid value ('):-1]}")
            else:
                path = ".".join(filter(None, [at, path])) if not path.startswith("[") \
                    else at + path
                parts.append(f"{path or '(top level)'}: {text}")
        return "; ".join(parts)
    return str(error)


def structure(data: Any, cls: type, conv: cattrs.Converter | None = None, *,
              at: str = "") -> Any:
    """Structure ``data`` into ``cls``; raise :class:`StructureError` with :func:`describe`
    (``at``: the path of ``data`` in its document, which the message's paths start with)."""
    conv = conv or _DEFAULT
    try:
        return conv.structure(data, cls)
    except (cattrs.BaseValidationError, ForbiddenExtraKeysError) as error:
        raise StructureError(describe(error, at)) from error


_DEFAULT = converter()
