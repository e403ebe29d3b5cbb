"""The dispatcher's typed interfaces: the event sources' protocol, the launcher registry
(``launcher.kind`` -> settings class and factory, each declared in its launcher's module)
and the environment the runners start from, handed to the launcher explicitly."""

from __future__ import annotations

import os
import sys

import pytest

from dispatcher import kubernetes, launchers
from dispatcher.__main__ import EXIT_CONFIG, main, runner_environment
from dispatcher.config import ConfigError, LauncherConfig, load
from dispatcher.launch import (
    KIND_MODULES,
    Launcher,
    RunnerHandle,
    UnknownLauncherKind,
    launcher_kind,
)
from dispatcher.sources import CtsSource, EventSource, S3Source
from registry.registry import DIRS_VARIABLE
from tests.unit import stubs
from tests.unit.conftest import MINIMAL_CONFIG

# -- event sources ------------------------------------------------------------------------


def test_the_sources_the_loop_runs_are_event_sources():
    core = stubs.Core()
    assert set(core.dispatcher.sources) == {"cts", "s3"}
    for kind, source in core.dispatcher.sources.items():
        assert isinstance(source, EventSource)
        assert source.kind == kind
    assert isinstance(CtsSource(stubs.Cts(), core.registry), EventSource)
    assert isinstance(S3Source(stubs.Objects(), core.registry), EventSource)


def test_something_without_a_source_s_methods_is_no_event_source():
    class Half:
        kind = "half"
        finish_services = ()

        def parse(self, value, max_bytes):
            return ()

    assert not isinstance(Half(), EventSource)


def test_the_stub_launcher_and_its_runners_are_a_launcher_and_handles():
    core = stubs.Core()
    assert isinstance(core.launcher, Launcher)
    core.announce("job1")
    core.turn()
    assert isinstance(core.runner("job1"), RunnerHandle)


# -- the launcher registry ----------------------------------------------------------------

@pytest.mark.parametrize(("kind", "module", "settings", "launcher"), [
    ("subprocess", launchers, launchers.SubprocessSettings, launchers.SubprocessLauncher),
    ("docker", launchers, launchers.DockerSettings, launchers.DockerLauncher),
    ("kubernetes", kubernetes, kubernetes.KubernetesSettings, kubernetes.KubernetesLauncher),
])
def test_each_kind_is_declared_in_its_launcher_s_module(kind, module, settings, launcher):
    assert KIND_MODULES[kind] == module.__name__
    entry = launcher_kind(kind)
    assert entry is module.LAUNCHER_KINDS[kind]
    assert (entry.name, entry.settings) == (kind, settings)
    assert entry.factory == launcher.from_settings


def test_every_declared_kind_is_registered():
    declared = {kind for module in (launchers, kubernetes) for kind in module.LAUNCHER_KINDS}
    assert declared == set(KIND_MODULES)


def test_an_unknown_kind_is_an_error_listing_the_known_kinds(config_path, capsys, monkeypatch):
    with pytest.raises(UnknownLauncherKind,
                       match=r"unknown launcher kind 'ssh' \(known: docker, kubernetes, "
                             r"subprocess\)"):
        launcher_kind("ssh")
    with pytest.raises(ConfigError, match="launcher.kind: unknown launcher kind 'ssh'"):
        load(config_path, {"CSEP_LAUNCHER__KIND": "ssh"})
    # The command: one line on stderr, exit status 78.
    for name in [n for n in os.environ if n.startswith("CSEP_")]:
        monkeypatch.delenv(name)
    config_path.write_text(MINIMAL_CONFIG + "launcher: {kind: ssh}\n")
    assert main(["--config", str(config_path)]) == EXIT_CONFIG
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "unknown launcher kind 'ssh' (known: docker, kubernetes, subprocess)" in error


def test_a_kind_s_section_is_read_with_its_own_settings_class(config_path):
    config = load(config_path, {"CSEP_LAUNCHER__KIND": "docker",
                                "CSEP_LAUNCHER__DOCKER__IMAGE": "runner:1",
                                "CSEP_LAUNCHER__DOCKER__CALL_TIMEOUT_SECONDS": "5"})
    assert config.launcher == LauncherConfig(
        "docker", launchers.DockerSettings(image="runner:1", call_timeout_seconds=5.0))
    # No launcher section: the subprocess launcher with its defaults.
    assert load(config_path, {}).launcher == LauncherConfig("subprocess",
                                                            launchers.SubprocessSettings())
    assert load(config_path, {}).launcher == LauncherConfig.default()


def test_a_kind_s_settings_are_of_its_own_class():
    with pytest.raises(ValueError, match="launcher.docker: expected DockerSettings settings, "
                                         "got SubprocessSettings"):
        LauncherConfig("docker", launchers.SubprocessSettings())
    with pytest.raises(UnknownLauncherKind, match="known: docker, kubernetes, subprocess"):
        LauncherConfig("ssh", launchers.SubprocessSettings())


def test_a_file_keeping_other_kinds_sections_still_loads(config_path):
    # The format operators use: every kind's section may stay in the file.
    config_path.write_text(MINIMAL_CONFIG
                           + "launcher:\n  kind: docker\n  docker: {image: runner:2}\n"
                           "  subprocess: {standby: false}\n  kubernetes: {namespace: csep}\n")
    assert load(config_path, {}).launcher.settings == launchers.DockerSettings(image="runner:2")


def test_a_kind_whose_module_cannot_be_imported_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "dispatcher.kubernetes", None)  # import fails
    with pytest.raises(UnknownLauncherKind, match="the 'kubernetes' launcher cannot be loaded"):
        launcher_kind("kubernetes")


# -- the runners' environment -------------------------------------------------------------

def test_the_registry_s_directories_reach_the_runners_without_touching_os_environ(config_path):
    before = dict(os.environ)
    environ = {"PATH": "/bin", DIRS_VARIABLE: "@builtin", "CSEP_CTS_TOKEN": "secret"}
    config = load(config_path, {"CSEP_REGISTRY_DIRS": "[/opt/importers, '@examples']"})
    runner_env = runner_environment(config, environ)
    assert runner_env[DIRS_VARIABLE] == os.pathsep.join(
        ["@builtin", "/opt/importers", "@examples"])
    assert environ[DIRS_VARIABLE] == "@builtin"                   # the input is not changed
    assert runner_environment(load(config_path, {}), environ) == environ  # no directories: as is
    # The subprocess launcher's runners get it (and not the token); the Docker launcher's
    # client has it, to pass as `-e CSEP_IMPORTER_DIRS`.
    process = LauncherConfig("subprocess", launchers.SubprocessSettings(standby=False))
    runner = process.make(runner_env).environment()
    assert runner == {"PATH": "/bin", DIRS_VARIABLE: runner_env[DIRS_VARIABLE]}
    docker = LauncherConfig("docker", launchers.DockerSettings()).make(runner_env)
    assert docker.environ == runner_env
    assert os.environ == before
