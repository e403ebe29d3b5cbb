"""The alert rules an operator deploys (deploy/prometheus/): valid for Prometheus, each
tested by promtool with series that fire it and series that do not, and querying only
metrics the dispatcher exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from dispatcher.metrics import Health, Metrics, serve
from stack.process import free_ports

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "csep-alerts.yaml"
CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULE_TESTS = ROOT / "tests" / "fixtures" / "prometheus" / "csep-alerts.test.yaml"
#: The alerts the runbook (docs/operations.md) promises (item by item).
EXPECTED = {"CsepDispatcherDown", "CsepDispatcherNotScraped", "CsepDispatcherRestarting",
            "CsepDispatcherUnhealthy", "CsepBreakerOpen", "CsepImporterHalted",
            "CsepIntakeHalted", "CsepDeadLettersRising", "CsepConsumerLagGrowing",
            "CsepRunnersFailing"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    assert shutil.which("promtool"), "promtool missing: scripts/install-system-packages.sh"
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def test_promtool_accepts_the_rules_and_the_scrape_example():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in checked.stdout
    config = promtool("check", "config", str(CONFIG))
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_rule_tests_pass():
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    assert {rule["alert"] for rule in rules()} == EXPECTED
    fired, quiet = set(), set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fired == EXPECTED, EXPECTED - fired
    assert quiet == EXPECTED, EXPECTED - quiet


def test_every_metric_the_rules_query_is_exported():
    health = Health()
    health.status = {"breakers": {"cts": {"open": True, "open_seconds": 1}},
                     "halted_importers": ["imp"], "intake_halted": False}
    metrics = Metrics()
    metrics.runner_seconds.labels("imp", "succeeded").observe(3)
    metrics.lag.labels("t", "0").set(1)
    port = free_ports(1)[0]
    server = serve(metrics, health, port, host="127.0.0.1")  # registers the health metrics
    server.shutdown()
    text = generate_latest(metrics.registry).decode()
    exported = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines()
                if line and not line.startswith("#")}
    queried = {name for rule in rules()
               for name in re.findall(r"\b(?:csep|process)_[a-z_]+", rule["expr"])}
    assert {"csep_healthy", "csep_breaker_open_seconds", "csep_importer_halted",
            "csep_intake_halted", "csep_events_total", "csep_consumer_lag",
            "csep_runner_duration_seconds_count", "process_start_time_seconds"} <= queried
    assert queried <= exported, queried - exported
