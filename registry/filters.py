"""Which jobs an importer takes: the ``match`` conditions of an importer YAML (seed 002's
PASS/SKIP filters, composed in config).

A condition is a mapping; every key it sets must hold (an implicit "all of")::

    match:
      user: [alice, "team_*"]           # the job's user is one of these names / globs
      image_digest: ["sha256:4f0c*"]    # the image digest matches one of these
      arg: ["--db", "--threads=*"]      # at least one argument matches one of these
      output: ["*/quality_report.tsv"]  # at least one output file matches one of these
      size: {min: 1, max: 1048576}      # an S3 object's size in bytes (s3 importers only)
      all_of: [{...}, {...}]            # every one of these conditions holds
      any_of: [{...}, {...}]            # at least one of these holds
      not: {...}                        # this condition does not hold

Patterns are shell globs (:func:`fnmatch.fnmatchcase`: case-sensitive, ``*`` also crosses
``/``); a single pattern may be written without the list. Output files are matched on
their full CTS name, bucket first (an S3 object: ``bucket/key``, the key decoded).
Structured CTS arguments are matched as their JSON text. ``size`` bounds are inclusive.

Which keys make sense depends on the importer's source: an S3 object has no image digest
or arguments, and a CTS job's outputs carry no size here; :meth:`Match.keys_used` lets the
registry refuse the others at load.

Evaluation is pure: :meth:`Match.refusal` takes a :class:`JobFacts` and returns None when
the job matches, else one line naming the first condition that failed and why.
"""

from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import Any

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote
from cattrs.gen import make_dict_structure_fn, override

from contract.spec import JobSpec

Patterns = tuple[str, ...]


@attrs.frozen
class JobFacts:
    """What a filter may look at in a job."""

    user: str
    image_digest: str
    args: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # output file names, bucket first
    size: int | None = None        # an S3 object's size in bytes

    @classmethod
    def of(cls, spec: JobSpec) -> JobFacts:
        return cls(user=spec.job.user, image_digest=spec.job.image_digest or "", args=spec.args,
                   outputs=tuple(o.file for o in spec.job.outputs),
                   size=spec.job.object.size if spec.job.object else None)


def _patterns(instance: Any, attribute: Any, value: Patterns | None) -> None:
    if value is not None and (not value or not all(value)):
        raise ValueError(f"{_key(attribute.name)} needs at least one non-empty pattern")


def _conditions(instance: Any, attribute: Any, value: tuple[Match, ...] | None) -> None:
    if value is not None and not value:
        raise ValueError(f"{_key(attribute.name)} needs at least one condition")


def _key(name: str) -> str:
    return name.rstrip("_")  # `not` is a keyword: the attribute is `not_`


def _bytes(instance: Any, attribute: Any, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"size.{attribute.name} must not be negative, got {value}")


@attrs.frozen
class SizeRange:
    """Inclusive bounds on a size in bytes; at least one is given."""

    min: int | None = attrs.field(default=None, validator=_bytes)
    max: int | None = attrs.field(default=None, validator=_bytes)

    def __attrs_post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise ValueError("size needs min, max or both (bytes)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"size.min ({self.min}) is above size.max ({self.max})")

    def holds(self, size: int) -> bool:
        return ((self.min is None or size >= self.min)
                and (self.max is None or size <= self.max))

    def describe(self) -> str:
        return ", ".join(f"{name} {value}" for name, value in (("min", self.min),
                                                                ("max", self.max))
                         if value is not None)


@attrs.frozen
class Match:
    """One condition; each field set must hold. Build it with :func:`structure_match`."""

    user: Patterns | None = attrs.field(default=None, validator=_patterns)
    image_digest: Patterns | None = attrs.field(default=None, validator=_patterns)
    arg: Patterns | None = attrs.field(default=None, validator=_patterns)
    output: Patterns | None = attrs.field(default=None, validator=_patterns)
    size: SizeRange | None = None
    all_of: tuple[Match, ...] | None = attrs.field(default=None, validator=_conditions)
    any_of: tuple[Match, ...] | None = attrs.field(default=None, validator=_conditions)
    not_: Match | None = None

    def __attrs_post_init__(self) -> None:
        if all(getattr(self, a.name) is None for a in attrs.fields(Match)):
            raise ValueError("a condition needs at least one of: "
                             + ", ".join(_key(a.name) for a in attrs.fields(Match)))

    def refusal(self, job: JobFacts, where: str = "match") -> str | None:
        """None when ``job`` meets every part of this condition; else why not, naming the
        failed part (e.g. ``match.any_of[1].user: 'bob' matches none of ['alice']``)."""
        for name, value in (("user", job.user), ("image_digest", job.image_digest)):
            patterns = getattr(self, name)
            if patterns is not None and not _any_matches((value,), patterns):
                return f"{where}.{name}: {value!r} matches none of {list(patterns)}"
        for name, values, what in (("arg", job.args, "argument"),
                                   ("output", job.outputs, "output file")):
            patterns = getattr(self, name)
            if patterns is not None and not _any_matches(values, patterns):
                return (f"{where}.{name}: no {what} (of {len(values)}) matches any of "
                        f"{list(patterns)}")
        if self.size is not None and (job.size is None or not self.size.holds(job.size)):
            got = "no size" if job.size is None else f"{job.size} bytes"
            return f"{where}.size: {got}, not within {self.size.describe()}"
        for index, condition in enumerate(self.all_of or ()):
            reason = condition.refusal(job, f"{where}.all_of[{index}]")
            if reason is not None:
                return reason
        if self.any_of is not None:
            reasons = [c.refusal(job, f"{where}.any_of[{i}]") for i, c in enumerate(self.any_of)]
            if all(reasons):
                return f"{where}.any_of: none holds ({'; '.join(filter(None, reasons))})"
        if self.not_ is not None and self.not_.refusal(job) is None:
            return f"{where}.not: the job meets {self.not_.describe()}"
        return None

    def describe(self) -> str:
        """The condition as compact text, for messages."""
        parts = [f"{name}={list(getattr(self, name))}" for name in
                 ("user", "image_digest", "arg", "output") if getattr(self, name) is not None]
        if self.size is not None:
            parts.append(f"size=[{self.size.describe()}]")
        for name in ("all_of", "any_of"):
            if getattr(self, name) is not None:
                parts.append(f"{name}[{', '.join(c.describe() for c in getattr(self, name))}]")
        if self.not_ is not None:
            parts.append(f"not {self.not_.describe()}")
        return "{" + ", ".join(parts) + "}"


    def keys_used(self, where: str = "match") -> Iterator[tuple[str, str]]:
        """Every key set in this condition and those inside it, as (path, key), e.g.
        ``("match.any_of[1].arg", "arg")``."""
        for attribute in attrs.fields(Match):
            value, key = getattr(self, attribute.name), _key(attribute.name)
            if value is None:
                continue
            yield f"{where}.{key}", key
            if key == "not":
                yield from value.keys_used(f"{where}.not")
            elif key in ("all_of", "any_of"):
                for index, condition in enumerate(value):
                    yield from condition.keys_used(f"{where}.{key}[{index}]")


def _any_matches(values: tuple[str, ...], patterns: Patterns) -> bool:
    return any(fnmatchcase(value, pattern) for value in values for pattern in patterns)


def register(conv: cattrs.Converter) -> cattrs.Converter:
    """Teach ``conv`` the ``match`` syntax: a lone pattern for a list, ``not`` for the
    attribute ``not_`` (error paths say ``not`` too). ``conv`` should be strict
    (:func:`common.convert.converter`)."""
    def patterns(value: Any, kind: Any) -> Patterns | None:
        if value is None and kind != Patterns:
            return None
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list):
            raise TypeError(f"expected a pattern or a list of patterns, got {type(value).__name__}")
        return tuple(conv.structure(value, list[str]))

    conv.register_structure_hook_func(lambda kind: kind in (Patterns, Patterns | None), patterns)
    generated = make_dict_structure_fn(Match, conv, not_=override(rename="not"),
                                       _cattrs_forbid_extra_keys=conv.forbid_extra_keys)

    def match(value: Any, _: type) -> Match:
        try:
            return generated(value, Match)
        except cattrs.ClassValidationError as error:
            for inner in error.exceptions:
                inner.__notes__ = [_renamed(note) for note in getattr(inner, "__notes__", [])]
            raise

    conv.register_structure_hook(Match, match)
    return conv


def _renamed(note: Any) -> Any:
    if isinstance(note, AttributeValidationNote) and note.name == "not_":
        return AttributeValidationNote(note.replace("not_", "not"), "not", note.type)
    return note
