"""The importer registry: which importer runs for which CTS image.

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

The files are read from the ``importers`` package directory and from every directory in
``CSEP_IMPORTER_DIRS`` (``os.pathsep``-separated); such a directory is put on
``sys.path``, so ``py_module: my_importer`` finds ``my_importer.py`` beside the YAML.

A module may also define ``check_importer_meta(importer_meta)``, raising ``ValueError``
for metadata it cannot work with; with ``check="import"`` it is called at load.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import yaml

from common.convert import StructureError, converter, positive, structure
from contract.spec import JobSpec
from registry.filters import JobFacts, Match, register
from registry.images import image_name, name_problem

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "importers"
DIRS_VARIABLE = "CSEP_IMPORTER_DIRS"

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


@attrs.frozen
class ImporterFile:
    """The content of one importer YAML file."""

    name: str
    py_module: str
    image: str
    # Seed 001: "the metadata, if any"; an empty `importer_meta:` is YAML null.
    importer_meta: dict[str, Any] | None = None
    settings: ImporterSettings = ImporterSettings()
    match: Match | None = None


@attrs.frozen
class ImporterEntry:
    """A registered importer and the file it came from."""

    name: str
    py_module: str
    image: str
    importer_meta: dict[str, Any]
    settings: ImporterSettings
    source: Path
    match: Match | None = None

    def refusal(self, spec: JobSpec) -> str | None:
        """None when this importer takes the job of ``spec``; else which ``match``
        condition failed and why (one line)."""
        return None if self.match is None else self.match.refusal(JobFacts.of(spec))


_converter = register(converter())


@attrs.frozen
class Registry:
    entries: tuple[ImporterEntry, ...]

    @classmethod
    def load(cls, dirs: Iterable[Path | str] | None = None, check: Check = "import",
             environ: Mapping[str, str] = os.environ) -> Registry:
        """Read every ``*.yaml`` of ``dirs`` (default: :func:`default_dirs`).

        ``check="import"`` imports each module and requires a callable ``run_import``;
        ``check="find"`` only locates the module without running it (for processes
        without pyspark). Raises :class:`RegistryError` listing every problem found.
        """
        directories = [Path(d) for d in (default_dirs(environ) if dirs is None else dirs)]
        problems: list[str] = []
        for directory in directories:
            if not directory.is_dir():
                problems.append(f"{directory}: importer directory does not exist")
            elif directory.resolve() != BUILTIN_DIR and str(directory) not in sys.path:
                # Appended: an importer file cannot shadow a module of the runner.
                sys.path.append(str(directory))
        entries: list[ImporterEntry] = []
        by_image: dict[str, ImporterEntry] = {}
        for path in sorted(p for d in directories if d.is_dir() for p in d.glob("*.yaml")):
            try:
                entry = _read(path)
                _check_module(entry, check)
            except ValueError as error:
                problems.append(str(error))
                continue
            if entry.image in by_image:
                problems.append(f"{path}: image {entry.image!r} is already registered by "
                                f"{by_image[entry.image].source}; one importer per image")
                continue
            by_image[entry.image] = entry
            entries.append(entry)
        if problems:
            raise RegistryError(problems)
        return cls(tuple(entries))

    def for_image(self, image: str) -> ImporterEntry | None:
        """The importer for ``image`` (a name, or a reference whose tag/digest is ignored)."""
        name = image_name(image)
        return next((e for e in self.entries if e.image == name), None)


def default_dirs(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The built-in ``importers`` directory, then each directory of ``CSEP_IMPORTER_DIRS``."""
    extra = [Path(p) for p in environ.get(DIRS_VARIABLE, "").split(os.pathsep) if p.strip()]
    return [BUILTIN_DIR, *extra]


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
    problem = name_problem(content.image)
    if problem:
        raise ValueError(f"{path}: image: {problem}")
    return ImporterEntry(name=content.name, py_module=content.py_module, image=content.image,
                         importer_meta=content.importer_meta or {},
                         settings=content.settings, source=path, match=content.match)


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
