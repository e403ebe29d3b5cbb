"""A server process that dies with its owner and is health-checked before use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from common.net import connection_error
from common.process import die_with_parent


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent(uid: int | None, gid: int | None) -> Callable[[], None]:
    def preexec() -> None:
        # Drop privileges first: changing credentials clears the parent-death signal.
        if gid is not None:
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        die_with_parent()

    return preexec


class ServerProcess:
    """One long-running server process.

    The process gets its own session (so stop() reaches its children) and is killed by
    the kernel if the Python process that started it dies, even by SIGKILL: an
    interrupted test run leaves no server behind.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *,
                 env: dict[str, str] | None = None, cwd: Path | None = None,
                 uid: int | None = None, gid: int | None = None,
                 stop_grace: float = 15.0) -> None:
        self.name = name
        self.stop_grace = stop_grace
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - the child writes it until stop()
        self.proc = subprocess.Popen(
            list(argv), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent(uid, gid),
        )

    def wait_healthy(self, check: Callable[[], bool], timeout: float) -> None:
        """Poll ``check`` until it returns True; raise if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} while starting; "
                    f"last log lines:\n{self.log_tail()}")
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001 - any failure means "not ready yet"
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(
            f"{self.name} not healthy after {timeout:.0f}s; last log lines:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``stop_grace``."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self._log.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    return connection_error(host, port, timeout=0.5) is None
