"""Which importer takes an S3 object, and as whose job: routes, match conditions, users."""

from __future__ import annotations

import sys
from datetime import datetime

import pytest

from dispatcher.errors import EventRejected
from dispatcher.s3events import ObjectCreated
from dispatcher.sources import NoImport, S3Source, route
from registry import Registry


def event(key: str = "raw/my file ü.tsv", principal: str | None = "alice", size: int = 100,
          bucket: str = "cdm-dataplane") -> ObjectCreated:
    return ObjectCreated(event_name="s3:ObjectCreated:Put",
                         time=datetime.fromisoformat("2026-11-20T10:15:00+00:00"),
                         bucket=bucket, key=key, size=size, etag="e", sequencer="17A",
                         principal_id=principal)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    # This test's own tool_importer.py is imported, not one a test before it imported.
    monkeypatch.delitem(sys.modules, "tool_importer", raising=False)
    (tmp_path / "tool_importer.py").write_text("def run_import(g, j, m):\n    pass\n")

    def load(**files: str) -> Registry:
        for name, text in files.items():
            (tmp_path / f"{name}.yaml").write_text(
                f"name: {name}\npy_module: tool_importer\nsource: s3\n{text}")
        return Registry.load([tmp_path])

    return load


def test_the_routed_importer_takes_the_object_as_the_uploader(registry):
    loaded = registry(sheets="s3: {bucket: cdm-dataplane, keys: 'raw/*.tsv'}\n")
    entry, user = route(loaded, event())
    assert (entry.name, user) == ("sheets", "alice")


def test_a_route_s_user_wins_over_the_uploader(registry):
    loaded = registry(sheets="s3: {bucket: cdm-dataplane, keys: 'raw/*', user: curator}\n")
    assert route(loaded, event(principal="AWS:AIDAEXAMPLE"))[1] == "curator"
    assert route(loaded, event(principal="alice"))[1] == "curator"


def test_an_object_no_importer_routes_is_a_no_op(registry):
    loaded = registry(sheets="s3: {bucket: cdm-dataplane, keys: 'raw/*.tsv'}\n")
    assert route(loaded, event(key="raw/notes.txt")) == NoImport(
        "no importer routes s3://cdm-dataplane/raw/notes.txt")
    assert route(loaded, event(bucket="cdm-other")) == NoImport(
        "no importer routes s3://cdm-other/raw/my file ü.tsv")


def test_a_refusing_match_is_a_no_op_naming_the_condition(registry):
    loaded = registry(sheets="s3: {bucket: cdm-dataplane, keys: 'raw/*'}\n"
                             "match: {size: {max: 10}, not: {user: robot}}\n")
    assert route(loaded, event(size=100)) == NoImport(
        "importer sheets does not take the object: match.size: 100 bytes, not within max 10")
    assert route(loaded, event(size=5, principal="robot")) == NoImport(
        "importer sheets does not take the object: match.not: the job meets {user=['robot']}")
    assert route(loaded, event(size=5))[0].name == "sheets"


def test_match_conditions_choose_between_importers_on_one_route(registry):
    loaded = registry(small="s3: {bucket: cdm-dataplane, keys: 'raw/*'}\n"
                            "match: {size: {max: 1000}}\n",
                      big="s3: {bucket: cdm-dataplane, keys: 'raw/*'}\n"
                          "match: {size: {min: 1001}}\n")
    assert route(loaded, event(size=1000))[0].name == "small"
    assert route(loaded, event(size=1001))[0].name == "big"


def test_an_object_several_importers_take_is_rejected_naming_them(registry):
    loaded = registry(everything="s3: {bucket: cdm-dataplane, keys: '*'}\n",
                      sheets="s3: {bucket: cdm-dataplane, keys: 'raw/*.tsv'}\n")
    with pytest.raises(EventRejected) as rejected:
        route(loaded, event())
    message = str(rejected.value)
    assert message.startswith("s3://cdm-dataplane/raw/my file ü.tsv is taken by 2 importers, "
                              "everything (")
    assert "sheets (" in message and "then replay" in message
    assert route(loaded, event(key="other.bin"))[0].name == "everything"


@pytest.mark.parametrize("principal", [None, "AWS:AIDAEXAMPLE", "svc-account", "1abc"])
def test_without_a_usable_user_the_object_is_rejected(registry, principal):
    loaded = registry(sheets="s3: {bucket: cdm-dataplane, keys: 'raw/*'}\n")
    with pytest.raises(EventRejected, match="no user for the import: the uploader .* is not "
                                            "a plain user name .* sets no s3.user"):
        route(loaded, event(principal=principal))


def test_only_an_object_some_importer_takes_waits_for_s3(registry):
    # An event routing alone decides neither waits behind S3's breaker nor closes it.
    loaded = registry(sheets="s3: {bucket: cdm-dataplane, keys: 'raw/*'}\n"
                             "match: {size: {max: 10}}\n")
    source = S3Source(client=None, registry=loaded)
    assert source.prepare_services(event(size=5)) == ("s3",)
    assert source.prepare_services(event(size=100)) == ()          # refused by its match
    assert source.prepare_services(event(key="other.tsv")) == ()   # routed nowhere
    assert source.prepare_services(event(size=5, principal="AWS:X")) == ()  # rejected
