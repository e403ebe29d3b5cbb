"""A real Prometheus scrapes a dispatcher working on the stack: every query of the Grafana
dashboard has data, and the alert rules evaluate against what it scraped."""

from __future__ import annotations

import json
import math
from pathlib import Path

from stack.prometheus import PrometheusServer
from tests.integration.dispatcher_lane import wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "csep-alerts.yaml"


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def numbers(result: list[dict]) -> list[float]:
    return [float(series["value"][1]) for series in result]


def test_prometheus_scrapes_a_dispatcher_and_every_dashboard_query_has_data(lane, tmp_path):
    dispatcher = lane.dispatcher()
    target = f"127.0.0.1:{dispatcher.config['metrics_port']}"
    with PrometheusServer(tmp_path / "prometheus", [target], rule_files=[RULES]) as prometheus:
        wait_until(lambda: numbers(prometheus.query('up{job="csep-dispatcher"}')) == [1.0], 30,
                   "the dispatcher scraped")
        # Imports one after the other, a scrape apart, so that rates see them move
        # (a series is new at its first sample: Prometheus cannot tell how it began).
        for n, job_id in enumerate(("quick-1", "quick-2", "quick-3")):
            lane.job(job_id, "quick")
            lane.complete(job_id)
            wait_until(lambda n=n: lane.committed()[0] == n + 1, 60, f"{job_id} imported")
            wait_until(lambda n=n: len(prometheus.query(
                f'csep_events_total{{outcome="imported"}} == {n + 1}')) == 1, 30, "a scrape")
        # What only a failure produces: a retry (the flaky importer fails twice), a dead
        # letter, and an infrastructure failure (the CTS answering 503 for a while).
        lane.job("flaky-1", "flaky")
        lane.complete("flaky-1")
        lane.publish(b"not json")
        wait_until(lambda: lane.committed()[0] == 5, 120, "the retried and the dead event")
        lane.job("outage-1", "quick")
        lane.stack.cts.outage(503)
        try:
            lane.complete("outage-1")
            wait_until(lambda: prometheus.query('csep_breaker_open_seconds{service="cts"} > 0'
                                                ' and on() csep_healthy == 0'),
                       60, "Prometheus to see the CTS breaker open and /health failing")
        finally:
            lane.stack.cts.outage(None)
        wait_until(lambda: lane.committed()[0] == 6, 120, "the event after the outage")
        wait_until(lambda: numbers(prometheus.query("csep_healthy")) == [1.0], 30, "healthy")

        empty = []
        for expr in dashboard_queries():
            try:
                wait_until(lambda expr=expr: prometheus.query(expr), 30, expr, interval=1)
            except AssertionError:
                empty.append(expr)
        assert empty == [], f"dashboard queries without data: {empty}"
        imported = prometheus.query(
            'sum by (outcome) (rate(csep_events_total{outcome="imported"}[5m]))')
        assert numbers(imported)[0] > 0
        p50 = prometheus.query('histogram_quantile(0.5, sum by (le, importer) '
                               '(rate(csep_runner_duration_seconds_bucket[15m])))')
        assert any(not math.isnan(v) and v > 0 for v in numbers(p50)), p50
        retries = numbers(prometheus.query("sum(increase(csep_retries_total[15m]))"))
        assert retries and retries[0] > 0

        # Every alert rule evaluates against the scraped data without an error.
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        assert len(rules) == 10
        assert {(rule["name"], rule["health"]) for rule in rules} == {
            (rule["name"], "ok") for rule in rules}, rules
    assert dispatcher.stop() == 0
