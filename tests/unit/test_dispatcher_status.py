"""The operator's views: the Grafana dashboard queries only metrics the dispatcher
exports, and /status serves the loop's view as JSON."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from prometheus_client import generate_latest

from dispatcher.metrics import Health, Metrics, serve
from stack.process import free_ports

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"


def _exported(metrics: Metrics) -> set[str]:
    text = generate_latest(metrics.registry).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")} | {
        re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines()
        if line and not line.startswith("#")}


def test_every_metric_the_dashboard_queries_is_exported():
    metrics = Metrics()
    metrics.events.labels("imported").inc()
    metrics.runner_seconds.labels("imp", "succeeded").observe(3)
    metrics.retries.labels("imp").inc()
    metrics.dead_letters.labels("RunnerFailed").inc()
    metrics.lag.labels("t", "0").set(1)
    metrics.infrastructure_failures.labels("s3").inc()
    exported = _exported(metrics)
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\bcsep_[a-z_]+", target["expr"])}
    assert len(queried) >= 8
    assert queried <= exported, queried - exported
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("outcome", "duration", "retries", "dead letters", "in flight", "lag"):
        assert topic in titles


def test_status_serves_the_loop_s_view():
    health = Health()
    health.status = {"events": [{"job_id": "j1", "stage": "running", "attempt": 2}],
                     "breakers": {"cts": {"open": True, "reason": "HTTP 503"}}}
    health.problems = lambda: "cts failing for 3s: HTTP 503"
    port = free_ports(1)[0]
    server = serve(Metrics(), health, port, host="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
            body = json.loads(answer.read())
    finally:
        server.shutdown()
    assert body["problem"] == "cts failing for 3s: HTTP 503"
    assert body["events"][0] == {"job_id": "j1", "stage": "running", "attempt": 2}
    assert body["breakers"]["cts"]["open"] is True
