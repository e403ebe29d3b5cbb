"""The importer registry: which importer runs for which CTS image or S3 object.

One YAML file per importer (seed 001), with optional per-importer settings::

    name: checkm2                       # informational
    py_module: importers.checkm2        # has run_import(get_spark, job_info, metadata)
    image: ghcr.io/kbasetest/cdm_checkm2   # image name only: no tag, no digest
    importer_meta: {database: checkm2, table: quality_report}
    settings:                           # optional, each key optional
      timeout_seconds: 3600
      max_attempts: 5
      max_concurrent: 2
      executor_cores: 1
    match:                              # optional: the jobs it takes (registry.filters)
      output: "*/quality_report.tsv"

A job whose importer's ``match`` refuses it is not imported: the dispatcher acknowledges
it as a no-op, as when no importer is registered for its image.

An importer of S3 object-created events says ``source: s3`` (``cts`` is the default) and
routes by bucket and key instead of by image::

    name: sample_sheets
    py_module: importers.examples.sample_sheets
    source: s3
    s3:
      bucket: cdm-dataplane             # the bucket's exact name
      keys: ["sample-sheets/*.tsv"]     # fnmatch patterns on the whole decoded key
      user: alice                       # optional: whose namespace; default: the uploader
    importer_meta: {...}

Key patterns are :func:`fnmatch.fnmatchcase` patterns matched against the whole key:
case-sensitive, ``*`` also crosses ``/``, ``?`` is one character, ``[...]`` a set. A cts
importer needs ``image`` and may not have ``s3``; an s3 importer needs ``s3`` and may not
have ``image``. Two s3 importers listing the same bucket and pattern are refused unless
both have a ``match`` to choose between them; any other overlap is decided per object by
the dispatcher, which dead-letters an object that more than one importer takes.

The registry is what the operator deploys: the directories named by
``CSEP_IMPORTER_DIRS`` (``os.pathsep``-separated), every ``*.yaml`` directly in each. A
name is a directory, or one of the built-in sets: ``@builtin`` (this repository's
``importers`` directory: CheckM2) and ``@examples`` (``importers/examples``). When the
variable is unset or blank the registry is ``@builtin``; naming anything replaces that
default, so the built-in importers are included only when ``@builtin`` is named.

A directory holding an ``__init__.py`` is an importer package (its YAMLs beside its
modules, as a separate importer repository ships them): the directory *containing* it is
put on ``sys.path``, so ``py_module: pkg.module`` is found and the package's modules
import each other (``from pkg import helpers``, ``from . import helpers``). Any other
directory is itself put on ``sys.path``, so ``py_module: my_importer`` finds
``my_importer.py`` beside the YAML. Both are appended: an importer cannot shadow a module
of the runner, and a package whose name is already taken (``importers``, another
package) is refused naming where that name comes from.

A module may also define ``check_importer_meta(importer_meta)``, raising ``ValueError``
for metadata it cannot work with; with ``check="import"`` it is called at load.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import attrs
import yaml

from common.convert import StructureError, converter, positive, structure
from contract.identifiers import check_bucket
from contract.spec import JobSpec, plain_user
from registry.filters import JobFacts, Match, Patterns, register
from registry.images import image_name, name_problem

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "importers"
DIRS_VARIABLE = "CSEP_IMPORTER_DIRS"
#: The importer sets shipped with the project, included only when named.
BUILTIN_SETS = {"@builtin": BUILTIN_DIR, "@examples": BUILTIN_DIR / "examples"}
#: The registry when ``CSEP_IMPORTER_DIRS`` is unset or blank.
DEFAULT_DIRS = ("@builtin",)

Check = Literal["import", "find"]


class RegistryError(ValueError):
    """One or more importer files are invalid; ``problems`` has one line per problem,
    each naming the file (and the field)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid importer registry:\n  " + "\n  ".join(problems))
        self.problems = problems


@attrs.frozen
class ImporterSettings:
    """How the dispatcher runs this importer; None means the dispatcher's default."""

    timeout_seconds: float | None = attrs.field(default=None, validator=positive)
    max_attempts: int | None = attrs.field(default=None, validator=positive)
    max_concurrent: int | None = attrs.field(default=None, validator=positive)
    executor_cores: int = attrs.field(default=1, validator=positive)


def _bucket(instance: Any, attribute: Any, value: str) -> None:
    check_bucket(attribute.name, value)


def _key_patterns(instance: Any, attribute: Any, value: Patterns) -> None:
    if not value or not all(value):
        raise ValueError("keys needs at least one non-empty pattern")


def _route_user(instance: Any, attribute: Any, value: str | None) -> None:
    if value is not None and not plain_user(value):
        raise ValueError(f"user {value!r} cannot name a table namespace (letters, digits "
                         "and _, a letter first)")


@attrs.frozen
class S3Route:
    """Which S3 objects an ``source: s3`` importer takes: a bucket, key patterns, and
    optionally the user whose namespace every import of this route writes to."""

    bucket: str = attrs.field(validator=_bucket)
    keys: Patterns = attrs.field(validator=_key_patterns)
    user: str | None = attrs.field(default=None, validator=_route_user)

    def takes(self, bucket: str, key: str) -> bool:
        """Whether the object ``bucket``/``key`` (decoded) is on this route."""
        return bucket == self.bucket and any(fnmatchcase(key, p) for p in self.keys)

    def describe(self) -> str:
        return f"s3://{self.bucket} keys={list(self.keys)}" + (
            f" user={self.user}" if self.user else "")


def _source(instance: Any, attribute: Any, value: str) -> None:
    if value not in ("cts", "s3"):
        raise ValueError(f"source: expected cts or s3, got {value!r}")


#: Match keys that mean nothing for an importer's source.
_KEYS_NOT_FOR = {"s3": {"image_digest": "an S3 object has no image digest",
                        "arg": "an S3 object has no arguments"},
                 "cts": {"size": "a CTS job's outputs carry no size"}}


@attrs.frozen
class ImporterFile:
    """The content of one importer YAML file."""

    name: str
    py_module: str
    source: str = attrs.field(default="cts", validator=_source)
    image: str | None = None
    s3: S3Route | None = None
    # Seed 001: "the metadata, if any"; an empty `importer_meta:` is YAML null.
    importer_meta: dict[str, Any] | None = None
    settings: ImporterSettings = ImporterSettings()
    match: Match | None = None

    def __attrs_post_init__(self) -> None:
        if self.source == "cts" and self.image is None:
            raise ValueError("image: required for a CTS importer (source: cts, the default)")
        if self.source == "cts" and self.s3 is not None:
            raise ValueError("s3: only for source: s3 importers")
        if self.source == "s3" and self.image is not None:
            raise ValueError("image: not allowed for source: s3 (an S3 importer is routed by "
                             "s3.bucket and s3.keys)")
        if self.source == "s3" and self.s3 is None:
            raise ValueError("s3: required for source: s3 (bucket and keys)")
        for path, key in self.match.keys_used() if self.match else ():
            if key in _KEYS_NOT_FOR[self.source]:
                raise ValueError(f"{path}: not for source: {self.source} importers "
                                 f"({_KEYS_NOT_FOR[self.source][key]})")


@attrs.frozen
class ImporterEntry:
    """A registered importer and the file it came from: a CTS importer has an ``image``,
    an S3 importer an ``s3`` route."""

    name: str
    py_module: str
    image: str | None
    importer_meta: dict[str, Any]
    settings: ImporterSettings
    source: Path
    match: Match | None = None
    s3: S3Route | None = None

    @property
    def event_source(self) -> str:
        """``cts`` or ``s3``: the events this importer takes."""
        return "cts" if self.s3 is None else "s3"

    def refusal(self, job: JobSpec | JobFacts) -> str | None:
        """None when this importer takes the job (of a spec, or described by its facts);
        else which ``match`` condition failed and why (one line)."""
        if self.match is None:
            return None
        return self.match.refusal(job if isinstance(job, JobFacts) else JobFacts.of(job))


_converter = register(converter())


@attrs.frozen
class Registry:
    entries: tuple[ImporterEntry, ...]

    @classmethod
    def load(cls, dirs: Iterable[Path | str] | None = None, check: Check = "import",
             environ: Mapping[str, str] = os.environ) -> Registry:
        """Read every ``*.yaml`` of ``dirs`` (default: :func:`default_dirs`), each a
        directory, an importer package directory or a built-in set (``@builtin``).

        ``check="import"`` imports each module and requires a callable ``run_import``;
        ``check="find"`` only locates the module without running it (for processes
        without pyspark). Raises :class:`RegistryError` listing every problem found.
        """
        problems: list[str] = []
        directories = []
        for name in (default_dirs(environ) if dirs is None else dirs):
            try:
                directory = resolve_dir(name)
            except ValueError as error:
                problems.append(str(error))
                continue
            if not directory.is_dir():
                problems.append(f"{directory}: importer directory does not exist")
            elif not any(directory.glob("*.yaml")):
                problems.append(f"{directory}: holds no importer files (*.yaml); name the "
                                "directory that holds them (for an importer package, the "
                                "package's own directory)")
            elif refused := _put_on_path(directory):
                problems.append(refused)
            else:
                directories.append(directory)
        entries: list[ImporterEntry] = []
        by_image: dict[str, ImporterEntry] = {}
        # In the order named (a clash names the later file), each directory's files sorted.
        for path in (p for d in directories for p in sorted(d.glob("*.yaml"))):
            try:
                entry = _read(path)
                _check_module(entry, check)
            except ValueError as error:
                problems.append(str(error))
                continue
            if entry.image is not None and entry.image in by_image:
                problems.append(f"{path}: image {entry.image!r} is already registered by "
                                f"{by_image[entry.image].source}; one importer per image")
                continue
            if entry.s3 is not None:
                clash = _route_clash(entry, entries)
                if clash:
                    problems.append(clash)
                    continue
            if entry.image is not None:
                by_image[entry.image] = entry
            entries.append(entry)
        if problems:
            raise RegistryError(problems)
        return cls(tuple(entries))

    def for_image(self, image: str) -> ImporterEntry | None:
        """The importer for ``image`` (a name, or a reference whose tag/digest is ignored)."""
        name = image_name(image)
        return next((e for e in self.entries if e.image == name), None)

    def for_object(self, bucket: str, key: str) -> tuple[ImporterEntry, ...]:
        """The S3 importers whose route takes the object ``bucket``/``key`` (decoded), in
        file name order; their ``match`` conditions are not consulted here."""
        return tuple(e for e in self.entries if e.s3 is not None and e.s3.takes(bucket, key))


def default_dirs(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The names of ``CSEP_IMPORTER_DIRS`` in order; :data:`DEFAULT_DIRS` when it is unset
    or blank. Each is resolved by :func:`resolve_dir`."""
    names = [p.strip() for p in environ.get(DIRS_VARIABLE, "").split(os.pathsep) if p.strip()]
    return names or list(DEFAULT_DIRS)


def resolve_dir(name: Path | str) -> Path:
    """The directory a registry name stands for: a built-in set's directory, else the
    path itself. Raises ``ValueError`` for an ``@name`` that is no built-in set."""
    text = str(name)
    if text.startswith("@"):
        if text not in BUILTIN_SETS:
            raise ValueError(f"{text}: not a built-in importer set (one of "
                             f"{', '.join(BUILTIN_SETS)})")
        return BUILTIN_SETS[text]
    return Path(name)


def _put_on_path(directory: Path) -> str | None:
    """Make the modules of ``directory`` importable: an importer package (it holds an
    ``__init__.py``) through its parent, any other directory through itself. Appended:
    an importer cannot shadow a module of the runner. The problem, when the package's
    name already stands for another directory."""
    resolved = directory.resolve()
    if resolved == BUILTIN_DIR:
        return None  # the project's own package, importable wherever the project is
    if not (directory / "__init__.py").is_file():
        if str(directory) not in sys.path:
            sys.path.append(str(directory))
        return None
    root = str(resolved.parent)
    if root not in sys.path:
        sys.path.append(root)
    try:
        found = importlib.util.find_spec(resolved.name)
    except (ImportError, ValueError) as error:
        return f"{directory}: package {resolved.name!r} cannot be found: {error}"
    origin = Path(found.origin).resolve().parent if found and found.origin else None
    if origin != resolved:
        where = origin or (list(found.submodule_search_locations or []) if found else None)
        return (f"{directory}: the importer package's name {resolved.name!r} is already "
                f"taken by {where}; rename the package (py_module names it)")
    return None


def _read(path: Path) -> ImporterEntry:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot be read as YAML: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with name, py_module, image, importer_meta")
    try:
        content = structure(data, ImporterFile, _converter)
    except StructureError as error:
        raise ValueError(f"{path}: {error}") from error
    problem = content.image is not None and name_problem(content.image)
    if problem:
        raise ValueError(f"{path}: image: {problem}")
    return ImporterEntry(name=content.name, py_module=content.py_module, image=content.image,
                         importer_meta=content.importer_meta or {},
                         settings=content.settings, source=path, match=content.match,
                         s3=content.s3)


def _route_clash(entry: ImporterEntry, entries: list[ImporterEntry]) -> str | None:
    """A bucket and key pattern ``entry`` shares with an importer registered before,
    where at least one of the two has no ``match`` (then every object the other takes
    is taken by both): the problem, naming both files."""
    route = entry.s3
    assert route is not None  # only an importer with an s3 route is checked
    for other in entries:
        if other.s3 is None or other.s3.bucket != route.bucket:
            continue
        if entry.match is not None and other.match is not None:
            continue  # their conditions choose, object by object
        for pattern in route.keys:
            if pattern in other.s3.keys:
                return (f"{entry.source}: s3.keys: bucket {route.bucket!r} with pattern "
                        f"{pattern!r} is already routed to {other.name!r} by {other.source}; "
                        "two importers may share a route only when both have a match "
                        "condition to choose between them")
    return None


def _check_module(entry: ImporterEntry, check: Check) -> None:
    where = f"{entry.source}: py_module: {entry.py_module!r}"
    if check == "find":
        try:
            found = importlib.util.find_spec(entry.py_module)
        except (ImportError, ValueError) as error:
            raise ValueError(f"{where} cannot be found: {error}") from error
        if found is None:
            raise ValueError(f"{where} cannot be found on the module path")
        return
    try:
        module = importlib.import_module(entry.py_module)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and missing != entry.py_module and not entry.py_module.startswith(
                missing + "."):
            # The module was found; one it imports is not installed where this runs.
            raise ValueError(f"{where} imports module {missing!r}, which is not installed "
                             "here: a dependency the importer's requirements must name "
                             f"({error})") from error
        raise ValueError(f"{where} cannot be imported: {type(error).__name__}: {error}") \
            from error
    except Exception as error:  # any error while importing foreign code is the file's fault
        raise ValueError(f"{where} cannot be imported: {type(error).__name__}: {error}") from error
    if not callable(getattr(module, "run_import", None)):
        raise ValueError(f"{where} has no callable run_import(get_spark, job_info, metadata)")
    check_meta = getattr(module, "check_importer_meta", None)
    if callable(check_meta):
        try:
            check_meta(entry.importer_meta)
        except ValueError as error:
            raise ValueError(f"{entry.source}: importer_meta: {error}") from error
