"""Prometheus metrics and the health endpoint, served together on one HTTP port.

``/metrics`` is the Prometheus exposition; ``/health`` answers 200 while the loop is
turning and its services answer, 503 otherwise (for compose and Kubernetes probes);
``/status`` is a JSON view of the events the dispatcher holds and its breakers' states.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("csep_events", "Events by outcome", ["outcome"],
                              registry=self.registry)
        self.runner_seconds = Histogram(
            "csep_runner_duration_seconds", "Runner wall time per attempt", ["importer", "status"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400),
            registry=self.registry)
        self.retries = Counter("csep_retries", "Runner attempts scheduled again", ["importer"],
                               registry=self.registry)
        self.dead_letters = Counter("csep_dead_letters", "Events put on the DLQ", ["error_class"],
                                    registry=self.registry)
        self.write_conflicts = Counter(
            "csep_write_conflicts", "Attempts that lost every commit to another writer of "
            "their table (run again, not spent)", ["importer"], registry=self.registry)
        self.in_flight = Gauge("csep_runners_in_flight", "Runners running now",
                               registry=self.registry)
        self.buffered = Gauge("csep_events_buffered", "Events taken in and not finished",
                              registry=self.registry)
        self.lag = Gauge("csep_consumer_lag", "Records behind the end of the partition",
                         ["topic", "partition"], registry=self.registry)
        self.infrastructure_failures = Counter(
            "csep_infrastructure_failures", "Failed calls to the CTS, S3 or Kafka", ["service"],
            registry=self.registry)


class Health:
    """What ``/health`` reports: the loop's last turn and whether services are failing."""

    def __init__(self, stale_after: float = 60.0) -> None:
        self.stale_after = stale_after
        self.last_turn = time.monotonic()
        #: The dispatcher's open circuit breakers, as one line (None: all closed).
        self.problems: Callable[[], str | None] = lambda: None
        #: The latest status view, replaced by the loop (at most every second).
        self.status: dict = {}

    def problem(self) -> str | None:
        if time.monotonic() - self.last_turn > self.stale_after:
            return "loop stalled"
        return self.problems()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # probes every few seconds would drown the event logs


def serve(metrics: Metrics, health: Health, port: int, host: str = "0.0.0.0") -> WSGIServer:
    """Start the HTTP server in a daemon thread; ``shutdown()`` stops it."""
    exposition = make_wsgi_app(metrics.registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/status":
            body = json.dumps({"problem": health.problem(), **health.status}, default=str)
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body.encode()]
        if environ.get("PATH_INFO") == "/health":
            problem = health.problem()
            status = "503 Service Unavailable" if problem else "200 OK"
            start_response(status, [("Content-Type", "text/plain")])
            return [(problem or "ok").encode() + b"\n"]
        return exposition(environ, start_response)

    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
