"""The console scripts of pyproject.toml name functions that exist."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _scripts() -> dict[str, str]:
    return tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]


def test_every_command_has_the_one_prefix():
    assert sorted(_scripts()) == ["csep-audit", "csep-dispatcher", "csep-dlq", "csep-registry",
                                  "csep-runner", "csep-sandbox"]


def test_every_entry_point_resolves_to_a_callable():
    for name, target in _scripts().items():
        module, _, attribute = target.partition(":")
        function = getattr(importlib.import_module(module), attribute, None)
        assert callable(function), f"{name} = {target!r} is not a callable"
