"""The operator's views: the Grafana dashboard queries only metrics the dispatcher
exports, and /status serves the loop's view as JSON."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from prometheus_client import generate_latest

from dispatcher.metrics import OUTCOMES, RECENT_OUTCOMES, Health, Metrics, serve
from dispatcher.stages import Outcome
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


def test_per_importer_counters_start_at_zero_for_every_registered_importer():
    text = generate_latest(Metrics(["checkm2", "gtdbtk"]).registry).decode()
    for importer in ("checkm2", "gtdbtk"):
        assert f'csep_retries_total{{importer="{importer}"}} 0.0' in text
        assert f'csep_write_conflicts_total{{importer="{importer}"}} 0.0' in text
    assert 'importer="' not in generate_latest(Metrics().registry).decode()


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


def _scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return answer.read().decode()


def test_what_health_and_status_know_is_exported_for_alerts():
    health = Health()
    health.status = {"breakers": {"cts": {"open": True, "open_seconds": 700.5, "reason": "503"},
                                  "s3": {"open": False, "open_seconds": 0, "reason": ""}},
                     "halted_importers": ["checkm2"], "intake_halted": False}
    health.problems = lambda: "importer checkm2 halted"
    port = free_ports(1)[0]
    server = serve(Metrics(), health, port, host="127.0.0.1")
    try:
        text = _scrape(port)
        health.problems = lambda: None
        health.status = {"breakers": {"cts": {"open": False, "open_seconds": 0, "reason": ""}},
                         "halted_importers": [], "intake_halted": True}
        after = _scrape(port)
    finally:
        server.shutdown()
    lines = set(text.splitlines())
    assert {"csep_healthy 0.0", 'csep_breaker_open_seconds{service="cts"} 700.5',
            'csep_breaker_open_seconds{service="s3"} 0.0',
            'csep_importer_halted{importer="checkm2"} 1.0', "csep_intake_halted 0.0"} <= lines
    # Every outcome from the start, so that a rate sees the first event of each.
    assert {f'csep_events_total{{outcome="{o}"}} 0.0' for o in OUTCOMES} <= lines
    assert any(line.startswith("process_start_time_seconds ") for line in lines)
    lines = set(after.splitlines())
    assert {"csep_healthy 1.0", 'csep_breaker_open_seconds{service="cts"} 0.0',
            "csep_intake_halted 1.0"} <= lines
    assert "csep_importer_halted{" not in after


def test_the_exported_outcomes_are_the_loop_s():
    assert set(OUTCOMES) == {o.value for o in Outcome}


def test_status_keeps_the_last_outcomes_bounded():
    health = Health()
    for n in range(RECENT_OUTCOMES + 5):
        health.finished(lambda n=n: {"job_id": f"j{n}", "outcome": "imported"})
    view = health.view()
    assert len(view["recent"]) == RECENT_OUTCOMES
    assert view["recent"][-1]["job_id"] == f"j{RECENT_OUTCOMES + 4}"
    assert view["recent"][0]["job_id"] == "j5" and view["problem"] is None
