"""A Prometheus server (Debian's ``prometheus`` package) scraping given targets.

It binds 127.0.0.1 on a free port, keeps its configuration and data under one directory,
scrapes every second (a test sees a counter move in seconds) and loads the rule files
given, so their expressions are evaluated against what it scraped.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from stack.process import ServerProcess, free_ports


class PrometheusError(RuntimeError):
    """A query Prometheus refused, or an answer that is not a success."""


class PrometheusServer:
    """``prometheus`` scraping ``targets`` (``host:port``) as job ``job``; ``url`` once
    started. Use as a context manager, or :meth:`start` and :meth:`stop`."""

    def __init__(self, directory: Path, targets: Sequence[str], *, job: str = "csep-dispatcher",
                 rule_files: Sequence[Path] = (), interval: str = "1s") -> None:
        self.directory = directory
        self.targets = list(targets)
        self.job = job
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.interval = interval
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ServerProcess | None = None

    def config(self) -> dict[str, Any]:
        return {"global": {"scrape_interval": self.interval,
                           "evaluation_interval": self.interval},
                "rule_files": [str(p) for p in self.rule_files],
                "scrape_configs": [{"job_name": self.job,
                                    "static_configs": [{"targets": self.targets}]}]}

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("no prometheus command: run scripts/install-system-packages.sh")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self._server = ServerProcess("prometheus", [
            binary, f"--config.file={config}", f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            self.directory / "prometheus.log", cwd=self.directory)
        self._server.wait_healthy(self._ready, timeout)
        return self

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
            return answer.status == 200

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``'s ``data``. Raises PrometheusError unless a success."""
        query = urllib.parse.urlencode(params)
        request = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar) of ``expr`` now: a list of series results."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data]

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
