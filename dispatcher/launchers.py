"""Launchers start one runner per attempt: ``python -m runner <spec-uri>`` somewhere.

One small interface, several implementations chosen by config (subprocess, Docker,
Kubernetes). The runner does not know which launched it; the dispatcher does not know
how the runner runs. ``launch`` returns at once; the dispatcher's loop polls the handle
so it can keep consuming Kafka while runners work.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import attrs

from common.process import die_with_parent


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


# -- implementations ------------------------------------------------------------------------

_TAIL_BYTES = 8192


class ProcessHandle:
    """A runner that is a local process (the runner itself, or a ``docker run`` client).

    The process leads its own process group, so a kill reaches the JVM it started. Its
    output goes to a temporary file whose tail is reported with the exit.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str],
                 timeout_seconds: float | None,
                 on_kill: Callable[[], None] | None = None) -> None:
        self._output = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=self._output,
                stderr=subprocess.STDOUT, start_new_session=True,
                # An orphaned runner would import an event the next dispatcher redoes.
                preexec_fn=die_with_parent)
        except OSError as error:
            self._output.close()
            raise LaunchError(f"cannot start {argv[0]!r}: {error}") from error
        self._deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        self._on_kill = on_kill
        self._timed_out = False
        self._exit: RunnerExit | None = None

    def poll(self) -> RunnerExit | None:
        if self._exit is not None:
            return self._exit
        code = self._process.poll()
        if code is None and self._deadline is not None and time.monotonic() > self._deadline:
            self._timed_out = True
            self.kill()
            code = self._process.wait()
        if code is None:
            return None
        self._exit = RunnerExit(
            exit_code=None if code < 0 or self._timed_out else code,
            signal=-code if code < 0 else (signal.SIGKILL if self._timed_out else None),
            timed_out=self._timed_out, stderr_tail=self._tail())
        return self._exit

    def kill(self) -> None:
        if self._on_kill is not None:
            self._on_kill()
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _tail(self) -> str:
        self._output.seek(0, os.SEEK_END)
        size = self._output.tell()
        self._output.seek(max(0, size - _TAIL_BYTES))
        text = self._output.read().decode("utf-8", errors="replace")
        self._output.close()
        return text


class SubprocessLauncher:
    """Runs ``python -m runner <spec-uri>`` as a child process with this process's
    environment (which holds the credentials the runner needs)."""

    def __init__(self, command: Sequence[str] = (sys.executable, "-m", "runner"),
                 environ: Mapping[str, str] | None = None) -> None:
        self.command = tuple(command)
        self.environ = environ

    def launch(self, request: LaunchRequest) -> ProcessHandle:
        env = dict(os.environ if self.environ is None else self.environ)
        return ProcessHandle([*self.command, request.spec_uri], env, request.timeout_seconds)


class DockerLauncher:
    """Runs the runner image with ``docker run``.

    Credentials are passed as ``-e NAME`` (name only): docker copies the value from its
    client's environment, so it is neither on the command line nor in the spec.
    """

    def __init__(self, image: str, *, network: str | None = None,
                 pass_env: Sequence[str] = (), extra_args: Sequence[str] = (),
                 docker: str = "docker", environ: Mapping[str, str] | None = None) -> None:
        self.image = image
        self.network = network
        self.pass_env = tuple(pass_env)
        self.extra_args = tuple(extra_args)
        self.docker = docker
        self.environ = environ

    def container_name(self, request: LaunchRequest) -> str:
        safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in request.job_id)
        return f"csep-{safe}-{request.attempt}-{os.getpid()}"

    def command(self, request: LaunchRequest) -> list[str]:
        """The exact ``docker run`` argument list for ``request``."""
        argv = [self.docker, "run", "--rm", "--name", self.container_name(request)]
        if self.network:
            argv += ["--network", self.network]
        for name in self.pass_env:
            argv += ["-e", name]
        argv += [*self.extra_args, self.image, request.spec_uri]
        return argv

    def launch(self, request: LaunchRequest) -> ProcessHandle:
        if shutil.which(self.docker) is None:
            raise LaunchError(f"no {self.docker!r} executable on PATH")
        env = dict(os.environ if self.environ is None else self.environ)
        name = self.container_name(request)

        def stop_container() -> None:
            # Killing the client alone would leave the container running.
            subprocess.run([self.docker, "kill", name], env=env, capture_output=True,
                           timeout=30, check=False)

        return ProcessHandle(self.command(request), env, request.timeout_seconds,
                             on_kill=stop_container)
