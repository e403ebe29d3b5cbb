"""Registry validation: every problem names its file and field."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

import attrs
import pytest

from contract.spec import EventRef, ImporterRef, JobInfo, JobSpec, Output
from registry import ImporterSettings, Registry, RegistryError, image_name
from registry.filters import JobFacts
from registry.images import name_problem

MODULE = "def run_import(get_spark, job_info, metadata):\n    pass\n"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def importer_yaml(image: str = "example.org/team/tool", py_module: str = "tool_importer",
                  extra: str = "") -> str:
    return (f"name: tool\npy_module: {py_module}\nimage: {image}\n"
            f"importer_meta:\n  table: t\n{extra}")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    # This test's own tool_importer.py is imported, not one a test before it imported.
    monkeypatch.delitem(sys.modules, "tool_importer", raising=False)
    write(tmp_path, "tool_importer.py", MODULE)
    return tmp_path


def problems(folder: Path, check: str = "import") -> list[str]:
    with pytest.raises(RegistryError) as caught:
        Registry.load([folder], check=check)
    return caught.value.problems


@pytest.mark.parametrize(("reference", "name"), [
    ("ghcr.io/kbasetest/cdm_checkm2", "ghcr.io/kbasetest/cdm_checkm2"),
    ("ghcr.io/kbasetest/cdm_checkm2:0.3.0", "ghcr.io/kbasetest/cdm_checkm2"),
    ("ghcr.io/kbasetest/cdm_checkm2@sha256:" + "a" * 64, "ghcr.io/kbasetest/cdm_checkm2"),
    ("ghcr.io/kbasetest/cdm_checkm2:0.3.0@sha256:" + "a" * 64, "ghcr.io/kbasetest/cdm_checkm2"),
    ("localhost:5000/tools/x", "localhost:5000/tools/x"),
    ("localhost:5000/tools/x:1.2", "localhost:5000/tools/x"),
    ("ubuntu", "ubuntu"),
])
def test_image_name_strips_tag_and_digest_but_not_a_port(reference, name):
    assert image_name(reference) == name


@pytest.mark.parametrize(("image", "reason"), [
    ("example.org/x:1", "has a tag"),
    ("localhost:5000/x:latest", "has a tag"),
    ("example.org/x@sha256:abc", "has a digest"),
    ("Example.org/UPPER", "not a valid image name"),
    ("example.org//x", "not a valid image name"),
])
def test_image_names_with_tag_digest_or_bad_syntax_are_refused(image, reason):
    assert reason in name_problem(image)


def test_bare_names_with_a_registry_port_are_accepted():
    assert name_problem("localhost:5000/tools/cdm_x") is None


def test_a_valid_file_loads_with_settings(folder):
    write(folder, "tool.yaml", importer_yaml(extra=(
        "settings:\n  timeout_seconds: 90\n  max_attempts: 3\n  max_concurrent: 2\n"
        "  executor_cores: 4\n")))
    registry = Registry.load([folder], check="import")
    entry = registry.for_image("example.org/team/tool")
    assert (entry.name, entry.py_module, entry.importer_meta) == ("tool", "tool_importer",
                                                                   {"table": "t"})
    assert entry.settings == ImporterSettings(timeout_seconds=90.0, max_attempts=3,
                                              max_concurrent=2, executor_cores=4)
    assert entry.source == folder / "tool.yaml"
    assert registry.for_image("example.org/team/tool:1.0@sha256:" + "b" * 64) is entry
    assert registry.for_image("example.org/team/other") is None


def test_settings_and_meta_are_optional(folder):
    write(folder, "tool.yaml", "name: tool\npy_module: tool_importer\n"
                               "image: example.org/team/tool\nimporter_meta:\n")
    [entry] = Registry.load([folder]).entries
    assert entry.importer_meta == {}
    assert entry.settings == ImporterSettings(executor_cores=1)


def test_a_missing_field_names_file_and_field(folder):
    write(folder, "tool.yaml", "name: tool\nimage: example.org/team/tool\n")
    [problem] = problems(folder)
    assert problem.startswith(str(folder / "tool.yaml"))
    assert "py_module: required field missing" in problem


def test_unknown_fields_and_bad_settings_are_refused(folder):
    write(folder, "a.yaml", importer_yaml(extra="settings:\n  timeout: 3\n"))
    write(folder, "b.yaml", importer_yaml(image="example.org/team/b",
                                          extra="settings:\n  max_attempts: 0\n"))
    write(folder, "c.yaml", importer_yaml(image="example.org/team/c",
                                          extra="settings:\n  executor_cores: two\n"))
    found = problems(folder)
    assert len(found) == 3
    assert "a.yaml: settings: extra fields found (timeout)" in found[0]
    assert "b.yaml: settings: invalid value (max_attempts must be positive, got 0)" in found[1]
    assert "c.yaml: settings.executor_cores" in found[2]


def test_an_image_with_a_tag_is_refused(folder):
    write(folder, "tool.yaml", importer_yaml(image="localhost:5000/team/tool:1.0"))
    [problem] = problems(folder)
    assert "tool.yaml: image: 'localhost:5000/team/tool:1.0' has a tag" in problem


def test_the_same_image_in_two_files_names_both(folder):
    write(folder, "first.yaml", importer_yaml())
    write(folder, "second.yaml", importer_yaml())
    [problem] = problems(folder)
    assert str(folder / "first.yaml") in problem and str(folder / "second.yaml") in problem


def test_a_module_that_cannot_be_imported_or_lacks_run_import(folder):
    write(folder, "broken_importer.py", "import no_such_package_anywhere\n")
    write(folder, "lazy_importer.py", "def import_it():\n    pass\n")
    write(folder, "a.yaml", importer_yaml(image="example.org/a", py_module="broken_importer"))
    write(folder, "b.yaml", importer_yaml(image="example.org/b", py_module="lazy_importer"))
    write(folder, "c.yaml", importer_yaml(image="example.org/c", py_module="not_there"))
    found = problems(folder, check="import")
    assert ("a.yaml: py_module: 'broken_importer' imports module 'no_such_package_anywhere', "
            "which is not installed here: a dependency the importer's requirements must "
            "name (No module named 'no_such_package_anywhere')") in found[0]
    assert "b.yaml: py_module: 'lazy_importer' has no callable run_import" in found[1]
    assert ("c.yaml: py_module: 'not_there' cannot be imported: ModuleNotFoundError: "
            "No module named 'not_there'") in found[2]


def test_find_checks_presence_without_running_the_module(folder):
    write(folder, "explosive_importer.py", "raise SystemExit('must not run')\n")
    write(folder, "a.yaml", importer_yaml(image="example.org/a", py_module="explosive_importer"))
    write(folder, "c.yaml", importer_yaml(image="example.org/c", py_module="not_there"))
    [problem] = problems(folder, check="find")
    assert "c.yaml: py_module: 'not_there' cannot be found" in problem


def test_directories_come_from_the_environment(folder):
    write(folder, "tool.yaml", importer_yaml())
    with pytest.raises(RegistryError) as caught:
        dirs = os.pathsep.join([str(folder), "/nonexistent-x"])
        Registry.load(check="find", environ={"CSEP_IMPORTER_DIRS": dirs})
    assert caught.value.problems == ["/nonexistent-x: importer directory does not exist"]
    registry = Registry.load(check="import", environ={"CSEP_IMPORTER_DIRS": str(folder)})
    # What is named is the registry: the built-in importers are not added to it.
    assert [e.image for e in registry.entries] == ["example.org/team/tool"]
    assert str(folder) in sys.path
    registry = Registry.load(check="import",
                             environ={"CSEP_IMPORTER_DIRS": f"@builtin{os.pathsep}{folder}"})
    assert [e.image for e in registry.entries] == ["ghcr.io/kbasetest/cdm_checkm2",
                                                   "example.org/team/tool"]


@pytest.mark.parametrize("value", [None, "", " : "])
def test_the_builtin_importers_are_the_default_registry(value):
    environ = {} if value is None else {"CSEP_IMPORTER_DIRS": value}
    [entry] = Registry.load(check="find", environ=environ).entries
    assert (entry.image, entry.py_module) == ("ghcr.io/kbasetest/cdm_checkm2", "importers.checkm2")


def test_an_unknown_builtin_set_and_a_directory_without_importers_are_named(folder):
    empty = folder / "repository-root"
    empty.mkdir()
    found = problems_of(["@nope", str(empty)])
    assert found[0] == "@nope: not a built-in importer set (one of @builtin, @examples)"
    assert found[1].startswith(f"{empty}: holds no importer files (*.yaml)")


def problems_of(dirs: list[str]) -> list[str]:
    with pytest.raises(RegistryError) as caught:
        Registry.load(dirs, check="find")
    return caught.value.problems


def package(root: Path, name: str) -> Path:
    """An importer package as its owners ship it: two importers sharing a helper module
    (one imports it absolutely, one relatively), one YAML each naming ``pkg.module``."""
    directory = root / name
    directory.mkdir(parents=True)
    write(directory, "__init__.py", "")
    write(directory, "helpers.py", "TABLE = 'shared'\n")
    write(directory, "first.py", f"from {name}.helpers import TABLE\n" + MODULE)
    write(directory, "second.py", "from .helpers import TABLE\n" + MODULE)
    write(directory, "first.yaml", importer_yaml("example.org/pkg/first", f"{name}.first"))
    write(directory, "second.yaml", importer_yaml("ghcr.io/kbasetest/cdm_checkm2",
                                                  f"{name}.second"))
    return directory


def test_a_package_is_importable_by_its_name_and_its_modules_import_each_other(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    directory = package(tmp_path / "checkout", "csep_unit_pkg_a")
    registry = Registry.load(check="import", environ={"CSEP_IMPORTER_DIRS": str(directory)})
    assert [(e.image, e.py_module) for e in registry.entries] == [
        ("example.org/pkg/first", "csep_unit_pkg_a.first"),
        # The package's own CheckM2: accepted, the built-in importers were not asked for.
        ("ghcr.io/kbasetest/cdm_checkm2", "csep_unit_pkg_a.second")]
    assert str(tmp_path / "checkout") in sys.path and str(directory) not in sys.path


def test_a_package_clashing_with_a_builtin_image_is_refused_naming_both_files(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    directory = package(tmp_path, "csep_unit_pkg_b")
    [problem] = problems_of(["@builtin", str(directory)])
    builtin = Path(__file__).resolve().parents[2] / "importers" / "checkm2.yaml"
    assert problem == (f"{directory / 'second.yaml'}: image 'ghcr.io/kbasetest/cdm_checkm2' "
                       f"is already registered by {builtin}; one importer per image")


def test_a_package_named_like_a_module_already_importable_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    directory = package(tmp_path, "importers")
    [problem] = problems_of([str(directory)])
    assert problem.startswith(f"{directory}: the importer package's name 'importers' is "
                              "already taken by ")
    assert "rename the package" in problem


def test_declarative_instructions_are_checked_at_load(folder):
    write(folder, "decl.yaml", importer_yaml(py_module="importers.declarative").replace(
        "importer_meta:\n  table: t\n",
        "importer_meta:\n  file_pattern: '*.tsv'\n  database: d\n  table: t\n"
        "  merge_keys: [id]\n  columns:\n    - {name: id, type: integer, nullable: false}\n"))
    [problem] = problems(folder)
    assert "decl.yaml: importer_meta: declarative importer_meta: columns[0]" in problem
    assert "type 'integer' is not one of" in problem


def test_the_shipped_example_importers_load():
    examples = Path(__file__).resolve().parents[2] / "importers" / "examples"
    registry = Registry.load(check="import",
                             environ={"CSEP_IMPORTER_DIRS": f"@builtin{os.pathsep}{examples}"})
    assert registry.for_image("ghcr.io/kbasetest/cdm_seqkit").py_module == "importers.declarative"
    assert registry.for_image("ghcr.io/kbasetest/cdm_checkm2").py_module == "importers.checkm2"
    assert Registry.load(["@examples"]).entries == Registry.load([examples]).entries
    [sheets] = registry.for_object("cdm-dataplane", "sample-sheets/2026/my sheet ü.tsv")
    assert sheets.py_module == "importers.examples.sample_sheets"


def test_the_upstream_style_example_loads_alone_and_clashes_with_the_builtins():
    upstream = Path(__file__).resolve().parents[2] / "examples" / "upstream_style"
    registry = Registry.load([upstream], check="import")
    assert registry.for_image("ghcr.io/kbasetest/cdm_checkm2").py_module == "upstream_checkm2"
    with pytest.raises(RegistryError, match="already registered by .*importers/checkm2.yaml"):
        Registry.load(["@builtin", upstream], check="find")


def test_a_match_condition_loads_and_decides_on_the_jobs_spec(folder):
    write(folder, "tool.yaml", importer_yaml(extra=(
        "match:\n  output: '*/quality_report.tsv'\n  not: {user: [robot, 'ci_*']}\n")))
    [entry] = Registry.load([folder]).entries
    spec = JobSpec(
        job=JobInfo(id="j1", outputs=(Output("b/j1/quality_report.tsv", "AA=="),),
                    image="example.org/team/tool", image_digest="sha256:ab",
                    input_file_count=1, output_file_count=1,
                    completion_time=datetime.fromisoformat("2026-11-20T10:15:00+00:00"),
                    user="alice", namespace_prefix="u_alice__"),
        importer=ImporterRef(name="tool", py_module="tool_importer"),
        event=EventRef(topic="t", partition=0, offset=1, trans_id="t1",
                       time=datetime.fromisoformat("2026-11-20T10:15:00+00:00")))
    assert entry.refusal(spec) is None
    robot = attrs.evolve(spec, job=attrs.evolve(spec.job, user="ci_nightly"))
    assert entry.refusal(robot) == "match.not: the job meets {user=['robot', 'ci_*']}"
    no_report = attrs.evolve(spec, job=attrs.evolve(spec.job, outputs=()))
    assert entry.refusal(no_report) == (
        "match.output: no output file (of 0) matches any of ['*/quality_report.tsv']")


def test_without_match_every_job_of_the_image_is_taken(folder):
    write(folder, "tool.yaml", importer_yaml())
    [entry] = Registry.load([folder]).entries
    assert entry.match is None and entry.refusal(None) is None


def test_a_bad_match_names_the_file_and_the_field(folder):
    write(folder, "a.yaml", importer_yaml(extra="match:\n  any_of:\n    - {user: alice}\n"
                                                "    - {outputs: '*.tsv'}\n"))
    write(folder, "b.yaml", importer_yaml(image="example.org/team/b",
                                          extra="match:\n  not: {user: []}\n"))
    write(folder, "c.yaml", importer_yaml(image="example.org/team/c", extra="match: {}\n"))
    found = problems(folder)
    assert len(found) == 3
    assert found[0] == f"{folder / 'a.yaml'}: match.any_of[1]: extra fields found (outputs)"
    assert found[1] == (f"{folder / 'b.yaml'}: match.not: invalid value (user needs at "
                        "least one non-empty pattern)")
    assert found[2].startswith(f"{folder / 'c.yaml'}: match: invalid value (a condition needs")


# -- S3 importers ------------------------------------------------------------------------------

def s3_yaml(name: str = "sheets", route: str = "{bucket: cdm-dataplane, keys: 'raw/*.tsv'}",
            extra: str = "") -> str:
    return (f"name: {name}\npy_module: tool_importer\nsource: s3\ns3: {route}\n"
            f"importer_meta:\n  table: t\n{extra}")


def test_an_s3_importer_routes_by_bucket_and_key_pattern(folder):
    write(folder, "sheets.yaml", s3_yaml(route="{bucket: cdm-dataplane, keys: "
                                              "['raw/*.tsv', 'raw/?.csv'], user: alice}"))
    write(folder, "tool.yaml", importer_yaml())
    registry = Registry.load([folder])
    sheets, tool = registry.entries
    assert (sheets.event_source, sheets.image, sheets.s3.user) == ("s3", None, "alice")
    assert tool.event_source == "cts" and tool.s3 is None
    assert registry.for_object("cdm-dataplane", "raw/my file ü.tsv") == (sheets,)
    # fnmatch on the whole key: `*` crosses `/`, case matters, `?` is one character.
    assert registry.for_object("cdm-dataplane", "raw/2026/a.tsv") == (sheets,)
    assert registry.for_object("cdm-dataplane", "raw/a.csv") == (sheets,)
    for bucket, key in [("cdm-dataplane", "raw/ab.csv"), ("cdm-dataplane", "RAW/a.tsv"),
                        ("cdm-dataplane", "x/raw/a.tsv"), ("cdm-other", "raw/a.tsv")]:
        assert registry.for_object(bucket, key) == ()
    assert registry.for_image("example.org/team/tool") is tool


@pytest.mark.parametrize(("text", "problem"), [
    ("name: x\npy_module: tool_importer\nsource: s3\n",
     "s3: required for source: s3 (bucket and keys)"),
    (s3_yaml(extra="image: example.org/team/x\n"),
     "image: not allowed for source: s3 (an S3 importer is routed by s3.bucket and s3.keys)"),
    ("name: x\npy_module: tool_importer\n",
     "image: required for a CTS importer (source: cts, the default)"),
    (importer_yaml(extra="s3: {bucket: cdm-dataplane, keys: '*'}\n"),
     "s3: only for source: s3 importers"),
    (importer_yaml().replace("name: tool", "name: tool\nsource: gcs"),
     "source: expected cts or s3, got 'gcs'"),
    (s3_yaml(route="{bucket: Not_A_Bucket, keys: '*'}"),
     "s3: invalid value (bucket: 'Not_A_Bucket' is not a valid S3 bucket name)"),
    (s3_yaml(route="{bucket: cdm-dataplane, keys: []}"),
     "s3: invalid value (keys needs at least one non-empty pattern)"),
    (s3_yaml(route="{bucket: cdm-dataplane}"), "s3.keys: required field missing"),
    (s3_yaml(route="{bucket: cdm-dataplane, keys: '*', user: 'AWS:AIDA'}"),
     "s3: invalid value (user 'AWS:AIDA' cannot name a table namespace"),
    (s3_yaml(route="{bucket: cdm-dataplane, keys: '*', prefix: raw/}"),
     "s3: extra fields found (prefix)"),
    (s3_yaml(extra="match: {any_of: [{user: alice}, {arg: --x}]}\n"),
     "match.any_of[1].arg: not for source: s3 importers (an S3 object has no arguments)"),
    (s3_yaml(extra="match: {not: {image_digest: 'sha256:*'}}\n"),
     "match.not.image_digest: not for source: s3 importers"),
    (importer_yaml(extra="match: {size: {max: 10}}\n"),
     "match.size: not for source: cts importers (a CTS job's outputs carry no size)"),
    (s3_yaml(extra="match: {size: {min: 10, max: 1}}\n"),
     "match.size: invalid value (size.min (10) is above size.max (1))"),
])
def test_an_s3_importer_problem_names_the_file_and_the_field(folder, text, problem):
    write(folder, "x.yaml", text)
    [found] = problems(folder)
    assert found.startswith(f"{folder / 'x.yaml'}: "), found
    assert problem in found, found


def test_two_importers_on_one_route_need_conditions_to_choose(folder):
    write(folder, "a.yaml", s3_yaml("a"))
    write(folder, "b.yaml", s3_yaml("b", route="{bucket: cdm-dataplane, keys: ['x/*', "
                                               "'raw/*.tsv']}"))
    [found] = problems(folder)
    assert found == (f"{folder / 'b.yaml'}: s3.keys: bucket 'cdm-dataplane' with pattern "
                     f"'raw/*.tsv' is already routed to 'a' by {folder / 'a.yaml'}; two "
                     "importers may share a route only when both have a match condition to "
                     "choose between them")


def test_overlapping_routes_with_conditions_load_and_the_conditions_choose(folder):
    write(folder, "small.yaml", s3_yaml("small", extra="match: {size: {max: 1000}}\n"))
    write(folder, "big.yaml", s3_yaml("big", extra="match: {size: {min: 1001}}\n"))
    write(folder, "all.yaml", s3_yaml("all", route="{bucket: cdm-dataplane, keys: 'raw/*'}"))
    registry = Registry.load([folder])
    routed = registry.for_object("cdm-dataplane", "raw/a.tsv")
    assert [e.name for e in routed] == ["all", "big", "small"]  # file name order
    facts = JobFacts(user="alice", image_digest="", outputs=("cdm-dataplane/raw/a.tsv",),
                     size=5000)
    assert [e.name for e in routed if e.refusal(facts) is None] == ["all", "big"]
    assert routed[2].refusal(facts) == "match.size: 5000 bytes, not within max 1000"
