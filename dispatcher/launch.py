"""What a launcher is: the interface the loop calls, and the registry of launcher kinds.

A launcher starts one runner per attempt (``python -m runner <spec-uri>`` somewhere).
``launch`` returns at once; the dispatcher's loop polls the handle so it can keep
consuming Kafka while runners work. The runner does not know which launcher started it;
the dispatcher does not know how the runner runs.

The configuration's ``launcher.kind`` names a kind; its :class:`LauncherKind` (the class
of its ``launcher.<kind>`` settings and the factory that builds the launcher from them)
is declared in the launcher's own module: ``subprocess`` and ``docker`` in
:mod:`dispatcher.launchers`, ``kubernetes`` in :mod:`dispatcher.kubernetes`. Each kind's
module is imported only when the kind is chosen (the Kubernetes client is an optional
extra), so this module, at the bottom of the dispatcher's layers, imports none of them:
:data:`KIND_MODULES` names them and :func:`launcher_kind` loads the one asked for. A new
kind is a module that declares ``LAUNCHER_KINDS`` and a line in :data:`KIND_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs


@attrs.frozen
class LaunchRequest:
    """One attempt of one spec."""

    spec_uri: str
    job_id: str
    importer: str
    attempt: int
    #: The result file's name beside the spec, chosen by the dispatcher with its claim.
    result_name: str | None = None
    timeout_seconds: float | None = None
    executor_cores: int = 1

    @property
    def runner_args(self) -> list[str]:
        """The runner's arguments: ``SPEC [--result NAME]`` (docs/contracts.md, section 4)."""
        return [self.spec_uri, *(["--result", self.result_name] if self.result_name else [])]


@attrs.frozen
class RunnerExit:
    """How a runner ended. ``exit_code`` is None when it died by a signal or was killed.

    ``infrastructure`` names the service (``docker``, ``kubernetes``...) when the runner
    never really ran because of it: an image that cannot be pulled, a daemon that refused,
    a pod that cannot be scheduled. Such an exit does not spend one of the event's attempts.
    """

    exit_code: int | None
    signal: int | None = None
    timed_out: bool = False
    stderr_tail: str = ""
    infrastructure: str | None = None


@runtime_checkable
class RunnerHandle(Protocol):
    def poll(self) -> RunnerExit | None:
        """The exit once the runner has ended (killing it first if it overran its
        timeout), else None. Never blocks."""

    def kill(self) -> None:
        """Stop the runner now (used at shutdown past the grace period and on revocation)."""


@runtime_checkable
class Launcher(Protocol):
    def launch(self, request: LaunchRequest) -> RunnerHandle:
        """Start a runner for ``request``; raise ``LaunchError`` if it cannot be started."""

    def close(self) -> None:
        """Release what the launcher holds between launches (not the runners launched)."""


class LaunchError(RuntimeError):
    """The runner could not be started at all (no docker binary, API refused, ...)."""


# -- the kinds ------------------------------------------------------------------------------

@attrs.frozen(kw_only=True)
class LauncherKind:
    """One value of ``launcher.kind``: its settings and how to build its launcher.

    ``settings`` is the attrs class the ``launcher.<name>`` section of the configuration
    is structured into (a field without a default makes the section required);
    ``factory(settings, environ)`` builds the launcher, ``environ`` being the environment
    runners are started from (the dispatcher's own, with the registry's directories in
    ``CSEP_IMPORTER_DIRS``): the launcher reads it instead of ``os.environ``.
    """

    name: str
    settings: type
    factory: Callable[[Any, Mapping[str, str]], Launcher]


#: Each kind and the module that declares it (in ``LAUNCHER_KINDS``, by name).
KIND_MODULES: Mapping[str, str] = {
    "subprocess": "dispatcher.launchers",
    "docker": "dispatcher.launchers",
    "kubernetes": "dispatcher.kubernetes",
}
DEFAULT_KIND = "subprocess"


class UnknownLauncherKind(ValueError):
    """``launcher.kind`` names no kind, or one whose module cannot be imported."""


def launcher_kind(name: str) -> LauncherKind:
    """The kind ``name``, its module imported. Raises :class:`UnknownLauncherKind` naming
    the known kinds."""
    module_name = KIND_MODULES.get(name)
    if module_name is None:
        raise UnknownLauncherKind(f"launcher.kind: unknown launcher kind {name!r} (known: "
                                  f"{', '.join(sorted(KIND_MODULES))})")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UnknownLauncherKind(
            f"launcher.kind: the {name!r} launcher cannot be loaded ({error}); is the "
            f"package's {name!r} extra installed?") from error
    kind: LauncherKind = module.LAUNCHER_KINDS[name]
    return kind
