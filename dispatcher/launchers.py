"""Launchers start one runner per attempt: ``python -m runner <spec-uri>`` somewhere.

One small interface, several implementations chosen by config (subprocess, Docker,
Kubernetes). The runner does not know which launched it; the dispatcher does not know
how the runner runs. ``launch`` returns at once; the dispatcher's loop polls the handle
so it can keep consuming Kafka while runners work.
"""

from __future__ import annotations

from typing import Protocol

import attrs


@attrs.frozen
class LaunchRequest:
    """One attempt of one spec."""

    spec_uri: str
    job_id: str
    importer: str
    attempt: int
    timeout_seconds: float | None = None
    executor_cores: int = 1


@attrs.frozen
class RunnerExit:
    """How a runner ended. ``exit_code`` is None when it died by a signal or was killed."""

    exit_code: int | None
    signal: int | None = None
    timed_out: bool = False
    stderr_tail: str = ""


class RunnerHandle(Protocol):
    def poll(self) -> RunnerExit | None:
        """The exit once the runner has ended (killing it first if it overran its
        timeout), else None. Never blocks."""

    def kill(self) -> None:
        """Stop the runner now (used at shutdown past the grace period and on revocation)."""


class Launcher(Protocol):
    def launch(self, request: LaunchRequest) -> RunnerHandle:
        """Start a runner for ``request``; raise ``LaunchError`` if it cannot be started."""


class LaunchError(RuntimeError):
    """The runner could not be started at all (no docker binary, API refused, ...)."""
