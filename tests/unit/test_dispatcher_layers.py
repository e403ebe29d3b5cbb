"""The dispatcher's modules import downward only (the layers of ``dispatcher.LAYERS``),
and nothing in the dispatcher or what it runs at start-up writes ``os.environ``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dispatcher
from dispatcher.launch import KIND_MODULES

PACKAGE = Path(dispatcher.__file__).parent
ROOT = PACKAGE.parent
LAYER = {module: number for number, layer in enumerate(dispatcher.LAYERS) for module in layer}


def imported_modules(source: str) -> set[str]:
    """The dispatcher modules that ``source`` imports, anywhere in it (a function's own
    imports included): ``import dispatcher.x``, ``from dispatcher.x import ...``,
    ``from dispatcher import x``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names
                      if a.name.startswith("dispatcher.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dispatcher":
                found |= {a.name for a in node.names if a.name in LAYER}
            elif node.module.startswith("dispatcher."):
                found.add(node.module.split(".")[1])
    return found


def upward_imports(module: str, source: str) -> list[str]:
    """The imports of ``module`` (its text ``source``) that do not go to a lower layer."""
    return sorted(f"{module} (layer {LAYER[module] + 1}) imports {target} "
                  f"(layer {LAYER[target] + 1 if target in LAYER else '?'})"
                  for target in imported_modules(source) - {module}
                  if LAYER.get(target, len(dispatcher.LAYERS)) >= LAYER[module])


def test_every_module_is_in_one_layer():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    listed = [m for layer in dispatcher.LAYERS for m in layer]
    assert sorted(listed) == modules, "dispatcher.LAYERS must list each module once"


@pytest.mark.parametrize("module", sorted(LAYER))
def test_a_module_imports_only_from_lower_layers(module):
    assert upward_imports(module, (PACKAGE / f"{module}.py").read_text()) == []


def test_an_upward_or_sideways_import_is_caught():
    assert upward_imports("retry", "from dispatcher.launchers import RunnerExit\n") == [
        "retry (layer 2) imports launchers (layer 2)"]
    assert upward_imports("config", "def f():\n    from dispatcher import loop\n") == [
        "config (layer 2) imports loop (layer 5)"]
    assert upward_imports("events", "import dispatcher.nowhere\n") == [
        "events (layer 1) imports nowhere (layer ?)"]
    assert upward_imports("loop", "from dispatcher.retry import verdict\n") == []


def test_the_launcher_kinds_modules_sit_above_the_registry_that_loads_them():
    for module in set(KIND_MODULES.values()):
        assert LAYER[module.removeprefix("dispatcher.")] > LAYER["launch"]


# -- os.environ ---------------------------------------------------------------------------

_WRITING_METHODS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__",
                    "__delitem__"}


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os")


def _writes_environ(function: ast.AST) -> bool:
    if not isinstance(function, ast.Attribute):
        return False
    if function.attr in _WRITING_METHODS:
        return _is_environ(function.value)
    return (function.attr in ("putenv", "unsetenv") and isinstance(function.value, ast.Name)
            and function.value.id == "os")


def environ_writes(source: str) -> list[int]:
    """The lines of ``source`` that change ``os.environ``: an item assigned or deleted,
    a method that writes it, ``os.putenv``/``os.unsetenv``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete))
                   else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign))
                   else [])
        item_written = any(isinstance(t, ast.Subscript) and _is_environ(t.value)
                           for t in targets)
        if item_written or (isinstance(node, ast.Call) and _writes_environ(node.func)):
            lines.append(node.lineno)
    return sorted(lines)


#: The dispatcher and the packages it runs at start-up (the runner is another process).
STARTUP_PACKAGES = ("dispatcher", "common", "contract", "registry")


@pytest.mark.parametrize("path", sorted(
    str(p.relative_to(ROOT)) for package in STARTUP_PACKAGES
    for p in (ROOT / package).rglob("*.py")))
def test_nothing_the_dispatcher_runs_writes_os_environ(path):
    assert environ_writes((ROOT / path).read_text()) == [], \
        f"{path} changes os.environ: pass the values explicitly"


def test_an_environ_write_is_caught():
    source = ("import os\n"
              "os.environ['A'] = '1'\n"
              "os.environ.update(B='2')\n"
              "del os.environ['A']\n"
              "os.putenv('C', '3')\n"
              "x = os.environ.get('D')\n"
              "env = dict(os.environ)\n"
              "env['E'] = '5'\n")
    assert environ_writes(source) == [2, 3, 4, 5]
