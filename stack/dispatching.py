"""Run the dispatcher as a process against the local stack (for the demo and the tests)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from stack.local import LocalStack, subprocess_env
from stack.process import free_ports


def dispatcher_config(stack: LocalStack, *, topic: str, dlq_topic: str, group_id: str,
                      spec_store: str, metrics_port: int, s3_topic: str | None = None,
                      **overrides: Any) -> dict[str, Any]:
    """A dispatcher config for ``stack`` (with ``s3_topic``, S3 notifications are read
    from it too); ``overrides`` replace top-level sections/keys."""
    config = {
        "kafka": {"bootstrap_servers": stack.kafka.bootstrap, "topic": topic,
                  "dlq_topic": dlq_topic, "group_id": group_id,
                  **({"s3_topic": s3_topic} if s3_topic else {})},
        "cts": {"url": stack.cts.url, "timeout_seconds": 5},
        "spec_store": spec_store,
        "metrics_port": metrics_port,
    }
    config.update(overrides)
    return config


class DispatcherProcess:
    """``python -m dispatcher --config <dir>/dispatcher.yaml``, output in ``<dir>/dispatcher.log``.

    The CTS token and the S3 and metastore credentials reach it through its environment.
    """

    def __init__(self, stack: LocalStack, directory: Path, config: dict[str, Any],
                 env: dict[str, str] | None = None, profile: Path | None = None) -> None:
        self.directory = directory
        #: Where cProfile writes the process's profile when it exits (None: not profiled).
        self.profile = profile
        self.config_path = directory / "dispatcher.yaml"
        self.log_path = directory / "dispatcher.log"
        self.config = config
        self.env = subprocess_env({**stack.runner_env(), "CSEP_CTS_TOKEN": stack.cts.token,
                                   **(env or {})})
        self.process: subprocess.Popen | None = None

    @staticmethod
    def free_port() -> int:
        return free_ports(1)[0]

    def start(self) -> DispatcherProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable,
                 *(["-m", "cProfile", "-o", str(self.profile)] if self.profile else []),
                 "-m", "dispatcher", "--config", str(self.config_path)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_serving(self, timeout: float = 30.0) -> None:
        """Wait until ``/health`` answers, healthy (200) or not (503: a service failing)."""
        url = f"http://127.0.0.1:{self.config['metrics_port']}/health"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dispatcher exited {self.process.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"dispatcher not healthy after {timeout}s: {self.log()}")
            time.sleep(0.2)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.config['metrics_port']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def stop(self, timeout: float = 60.0, sig: int = signal.SIGTERM) -> int:
        """Signal the dispatcher and wait for its exit status (kill it past ``timeout``)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""
