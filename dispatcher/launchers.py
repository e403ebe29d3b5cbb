"""The subprocess and Docker launchers (kinds ``subprocess`` and ``docker``).

The interface they implement, and the registry of kinds, are in :mod:`dispatcher.launch`;
each launcher here owns its settings (:class:`SubprocessSettings`,
:class:`DockerSettings`: the ``launcher.subprocess`` and ``launcher.docker`` sections of
the configuration) and declares its kind in :data:`LAUNCHER_KINDS`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence

import attrs

from common.convert import positive
from common.process import die_with_parent
from common.redaction import Redactor

# The interface, re-exported: callers of a launcher may import it from here.
from dispatcher.launch import (
    Launcher,
    LauncherKind,
    LaunchError,
    LaunchRequest,
    RunnerExit,
    RunnerHandle,
)

__all__ = [
    "LaunchError", "LaunchRequest", "Launcher", "RunnerExit", "RunnerHandle",
    "STANDBY", "ProcessHandle", "EndedHandle", "RUNNER_ENV", "allowed_environment",
    "SubprocessSettings", "SubprocessLauncher", "DOCKER_FAILED", "DockerSettings",
    "DockerLauncher", "LAUNCHER_KINDS",
]

log = logging.getLogger(__name__)

#: The runner's argument for a standby start (``runner.standby.STANDBY``; the dispatcher
#: does not import the runner).
STANDBY = "--standby"


# -- implementations ------------------------------------------------------------------------

_TAIL_BYTES = 8192


class ProcessHandle:
    """A runner that is a local process (the runner itself, or a ``docker run`` client).

    The process leads its own process group, so a kill reaches the JVM it started. Its
    output goes to a temporary file whose tail is reported with the exit.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str],
                 timeout_seconds: float | None,
                 on_kill: Callable[[], None] | None = None,
                 on_exit: Callable[[RunnerExit], RunnerExit] | None = None,
                 redact: Redactor | None = None, standby: bool = False) -> None:
        # The tail leaves the process (result file, DLQ record): no credential of the
        # environment the runner was given may be in it.
        self._redact = Redactor.from_env(env) if redact is None else redact
        self._on_exit = on_exit
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - the runner writes it; _tail closes it
        try:
            self._process = subprocess.Popen(
                list(argv), env=dict(env),
                stdin=subprocess.PIPE if standby else subprocess.DEVNULL, stdout=self._output,
                stderr=subprocess.STDOUT, start_new_session=True,
                # An orphaned runner would import an event the next dispatcher redoes.
                preexec_fn=die_with_parent)
        except OSError as error:
            self._output.close()
            raise LaunchError(f"cannot start {argv[0]!r}: {error}") from error
        self._deadline: float | None = None
        self._set_deadline(None if standby else timeout_seconds)
        self._on_kill = on_kill
        self._timed_out = False
        self._exit: RunnerExit | None = None

    def _set_deadline(self, timeout_seconds: float | None) -> None:
        self._deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds

    def hand_over(self, args: Sequence[str], timeout_seconds: float | None) -> bool:
        """Give a runner started with ``standby`` its arguments (one JSON line on its
        standard input, which is then closed) and start its timeout. False when it can no
        longer take them: it has ended, or its input is closed."""
        if self._process.poll() is not None or self._process.stdin is None:
            return False
        try:
            self._process.stdin.write(json.dumps(list(args)).encode() + b"\n")
            self._process.stdin.close()
        except OSError:  # it ended meanwhile (a broken pipe)
            return False
        self._set_deadline(timeout_seconds)
        return True

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
        ended = RunnerExit(
            exit_code=None if code < 0 or self._timed_out else code,
            signal=-code if code < 0 else (signal.SIGKILL if self._timed_out else None),
            timed_out=self._timed_out, stderr_tail=self._tail())
        self._exit = self._on_exit(ended) if self._on_exit else ended
        return self._exit

    def kill(self) -> None:
        if self._on_kill is not None:
            self._on_kill()
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def discard(self) -> RunnerExit:
        """Kill the process if it still runs and wait for it: how it ended."""
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        if self._process.poll() is None:
            self.kill()
            self._process.wait()
        ended = self.poll()
        assert ended is not None  # the process has been waited for
        return ended

    def _tail(self) -> str:
        self._output.seek(0, os.SEEK_END)
        size = self._output.tell()
        self._output.seek(max(0, size - _TAIL_BYTES))
        text = self._output.read().decode("utf-8", errors="replace")
        self._output.close()
        return self._redact(text)


class EndedHandle:
    """A runner found already ended (an adopted container that exited meanwhile)."""

    def __init__(self, ended: RunnerExit) -> None:
        self._exit = ended

    def poll(self) -> RunnerExit:
        return self._exit

    def kill(self) -> None:
        pass


#: The default environment of a subprocess runner (``fnmatch`` patterns of names): what
#: Spark, S3, the metastore and the importers need, nothing of the dispatcher's own (its
#: ``CSEP_CTS_TOKEN`` above all, and its ``CSEP_KAFKA__*``-style settings).
RUNNER_ENV = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR",
    "JAVA_HOME", "PYTHONPATH", "VIRTUAL_ENV", "SPARK_*", "PYSPARK_*", "HADOOP_*",
    "AWS_*", "CSEP_S3_*", "CSEP_SPARK_*", "CSEP_WAREHOUSE_DIR", "CSEP_METASTORE_*",
    "CSEP_TABLE_FORMAT", "CSEP_ICEBERG_*", "CSEP_IMPORTER_DIRS", "CSEP_LOG_LEVEL",
)


def allowed_environment(environ: Mapping[str, str], pass_env: Sequence[str]) -> dict[str, str]:
    """The variables of ``environ`` whose names match one of the ``pass_env`` patterns."""
    patterns = [re.compile(fnmatch.translate(p)) for p in pass_env]
    return {k: v for k, v in environ.items() if any(p.match(k) for p in patterns)}


@attrs.frozen
class SubprocessSettings:
    """``launcher.subprocess``: runners as child processes of the dispatcher."""

    #: Name patterns (``fnmatch``: ``LC_*``) of the dispatcher's environment variables a
    #: runner process gets; everything else, the CTS token first, stays with the dispatcher.
    pass_env: tuple[str, ...] = RUNNER_ENV
    #: Keep one runner started ahead of the next attempt, its Python modules loaded
    #: (``python -m runner --standby``): an attempt starts about a second sooner.
    standby: bool = True


class SubprocessLauncher:
    """Runs ``python -m runner <spec-uri>`` as a child process.

    The child gets only the variables of this process's environment that ``pass_env``
    allows (name patterns, default :data:`RUNNER_ENV`): the S3 and metastore credentials
    the runner needs, not the CTS token the importer code has no business seeing.

    With ``standby``, one runner is kept started ahead of the next attempt
    (``python -m runner --standby``, :mod:`runner.standby`): it loads pyspark's client and
    boto3 while no event waits, and an attempt hands it its arguments on its standard
    input instead of starting a process. The first is started with the launcher, the next
    at each hand-over. A standby runner that ended (it cannot have imported anything) is
    replaced, and the attempt gets a process of its own as without standby. ``close()``
    ends the one waiting.
    """

    def __init__(self, command: Sequence[str] = (sys.executable, "-m", "runner"),
                 environ: Mapping[str, str] | None = None,
                 pass_env: Sequence[str] = RUNNER_ENV, standby: bool = False) -> None:
        self.command = tuple(command)
        self.environ = environ
        self.pass_env = tuple(pass_env)
        self.standby = standby
        self._spare: ProcessHandle | None = None
        self.start_spare()

    @classmethod
    def from_settings(cls, settings: SubprocessSettings,
                      environ: Mapping[str, str]) -> SubprocessLauncher:
        """The launcher of ``launcher.subprocess``; runners get the variables of
        ``environ`` that ``settings.pass_env`` allows."""
        return cls(environ=environ, pass_env=settings.pass_env, standby=settings.standby)

    def environment(self) -> dict[str, str]:
        """The runner's environment."""
        return allowed_environment(os.environ if self.environ is None else self.environ,
                                   self.pass_env)

    def launch(self, request: LaunchRequest) -> ProcessHandle:
        handle = self._take_spare(request)
        if handle is None:
            handle = ProcessHandle([*self.command, *request.runner_args], self.environment(),
                                   request.timeout_seconds)
        self.start_spare()
        return handle

    def start_spare(self) -> None:
        """Start the standby runner unless one is waiting (a no-op without ``standby``).
        A failure to start one is logged: attempts then start their own process."""
        if not self.standby or self._spare is not None:
            return
        try:
            self._spare = ProcessHandle([*self.command, STANDBY], self.environment(), None,
                                        standby=True)
        except LaunchError as error:
            log.warning("no standby runner: %s", error)

    def close(self) -> None:
        """End the standby runner, if one is waiting."""
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()

    def _take_spare(self, request: LaunchRequest) -> ProcessHandle | None:
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        if spare.hand_over(request.runner_args, request.timeout_seconds):
            return spare
        ended = spare.discard()
        log.warning("the standby runner had ended (exit %s, signal %s): %s",
                    ended.exit_code, ended.signal, ended.stderr_tail[-2000:])
        return None


#: ``docker run``/``docker start`` exit with 125 when the daemon fails them: no such
#: image, a pull refused, a name in use, a bad option. The runner never ran.
DOCKER_FAILED = 125
_NO_SUCH_CONTAINER = re.compile(r"no such (object|container)", re.IGNORECASE)


@attrs.frozen
class DockerSettings:
    """``launcher.docker``: runners as containers of the runner image (``docker run``)."""

    image: str = "ghcr.io/kbase/cdm-spark-events-runner:latest"
    network: str | None = None
    #: Environment variables handed to the container by name (``-e NAME``): their values
    #: travel through the docker client's environment, never its command line.
    pass_env: tuple[str, ...] = (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CSEP_S3_ENDPOINT_URL", "CSEP_S3_REGION",
        "CSEP_SPARK_MASTER", "CSEP_WAREHOUSE_DIR", "CSEP_METASTORE_URL",
        "CSEP_METASTORE_USER", "CSEP_METASTORE_PASSWORD", "CSEP_TABLE_FORMAT",
        "CSEP_ICEBERG_CATALOG_URL", "CSEP_ICEBERG_CREDENTIAL", "CSEP_ICEBERG_WAREHOUSE",
        "CSEP_ICEBERG_SCOPE", "CSEP_IMPORTER_DIRS")
    extra_args: tuple[str, ...] = ()
    #: Deadline of each docker call the dispatcher waits for (inspect, logs, kill, rm).
    call_timeout_seconds: float = attrs.field(default=30.0, validator=positive)


class DockerLauncher:
    """Runs the runner image with ``docker run``.

    Credentials are passed as ``-e NAME`` (name only): docker copies the value from its
    client's environment, so it is neither on the command line nor in the spec.

    A container is named after its spec and attempt (:meth:`container_name`), so a
    dispatcher restarted while its predecessor's runner still runs finds that container
    and follows it (``docker attach``, or ``docker start -a`` if it was created but never
    started) instead of starting a second runner on the same attempt. Every docker call
    made while launching has a deadline of ``call_timeout`` seconds.
    """

    def __init__(self, image: str, *, network: str | None = None,
                 pass_env: Sequence[str] = (), extra_args: Sequence[str] = (),
                 docker: str = "docker", environ: Mapping[str, str] | None = None,
                 call_timeout: float = 30.0) -> None:
        self.image = image
        self.network = network
        self.pass_env = tuple(pass_env)
        self.extra_args = tuple(extra_args)
        self.docker = docker
        self.environ = environ
        self.call_timeout = call_timeout

    @classmethod
    def from_settings(cls, settings: DockerSettings,
                      environ: Mapping[str, str]) -> DockerLauncher:
        """The launcher of ``launcher.docker``; ``environ`` is the docker client's
        environment, from which ``-e NAME`` copies the values."""
        return cls(settings.image, network=settings.network, pass_env=settings.pass_env,
                   extra_args=settings.extra_args, environ=environ,
                   call_timeout=settings.call_timeout_seconds)

    @staticmethod
    def container_name(request: LaunchRequest) -> str:
        """``csep-<job id>-<hash of the spec URI>-a<attempt>``: the same for the same
        attempt in any dispatcher process, distinct across specs and attempts."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "-", request.job_id)[:40].strip("-_.") or "job"
        digest = hashlib.sha256(request.spec_uri.encode()).hexdigest()[:12]
        return f"csep-{safe}-{digest}-a{request.attempt}"

    def command(self, request: LaunchRequest) -> list[str]:
        """The exact ``docker run`` argument list for ``request``."""
        argv = [self.docker, "run", "--rm", "--name", self.container_name(request)]
        if self.network:
            argv += ["--network", self.network]
        for name in self.pass_env:
            argv += ["-e", name]
        argv += [*self.extra_args, self.image, *request.runner_args]
        return argv

    def close(self) -> None:
        """Nothing is held between launches."""

    def launch(self, request: LaunchRequest) -> ProcessHandle | EndedHandle:
        """Start the attempt's container, or follow the one already there.

        Raises ``LaunchError`` when there is no docker executable or the daemon cannot
        say whether the container exists (unreachable, too slow).
        """
        if shutil.which(self.docker) is None:
            raise LaunchError(f"no {self.docker!r} executable on PATH")
        env = dict(os.environ if self.environ is None else self.environ)
        name = self.container_name(request)
        state = self._state(name, env)

        def stop_container() -> None:
            # Killing the client alone would leave the container running.
            try:
                self._call(["kill", name], env, check=False)
            except LaunchError as error:
                log.warning("could not kill container %s: %s", name, error)

        def classify(ended: RunnerExit) -> RunnerExit:
            if ended.exit_code == DOCKER_FAILED:
                return attrs.evolve(ended, exit_code=None, infrastructure="docker")
            return ended

        def follow(argv: list[str]) -> ProcessHandle:
            return ProcessHandle(argv, env, request.timeout_seconds, on_kill=stop_container,
                                 on_exit=classify)

        if state is None:
            return follow(self.command(request))
        status, exit_code = state
        if status == "created":
            return follow([self.docker, "start", "--attach", name])
        if status in ("running", "restarting", "paused"):
            # attach exits with the container's own exit code once it ends.
            return follow([self.docker, "attach", "--no-stdin", "--sig-proxy=false", name])
        # Exited (or dead) before this dispatcher saw it end: its output and code remain.
        logs = self._call(["logs", "--tail", "200", name], env, check=False)
        self._call(["rm", "--force", name], env, check=False)
        tail = Redactor.from_env(env)((logs.stdout or "") + (logs.stderr or ""))[-_TAIL_BYTES:]
        return EndedHandle(classify(RunnerExit(exit_code=exit_code, stderr_tail=tail)))

    def _state(self, name: str, env: Mapping[str, str]) -> tuple[str, int] | None:
        """The container's status and exit code, or None when there is no such container."""
        inspected = self._call(
            ["container", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name],
            env, check=False)
        if inspected.returncode != 0:
            if _NO_SUCH_CONTAINER.search(inspected.stderr or ""):
                return None
            raise LaunchError(f"docker cannot inspect container {name} (exit "
                              f"{inspected.returncode}): {(inspected.stderr or '').strip()[:500]}")
        status, _, code = inspected.stdout.strip().partition(" ")
        return status, int(code or 0)

    def _call(self, args: list[str], env: Mapping[str, str],
              check: bool) -> subprocess.CompletedProcess:
        argv = [self.docker, *args]
        try:
            return subprocess.run(argv, env=dict(env), capture_output=True, text=True,
                                  timeout=self.call_timeout, check=check,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as error:
            raise LaunchError(f"{' '.join(argv[:3])} did not answer within "
                              f"{self.call_timeout}s") from error
        except OSError as error:
            raise LaunchError(f"cannot run {self.docker!r}: {error}") from error


#: The kinds of this module (see :mod:`dispatcher.launch`).
LAUNCHER_KINDS = {
    "subprocess": LauncherKind(name="subprocess", settings=SubprocessSettings,
                               factory=SubprocessLauncher.from_settings),
    "docker": LauncherKind(name="docker", settings=DockerSettings,
                           factory=DockerLauncher.from_settings),
}
