"""Prometheus metrics and the health endpoint, served together on one HTTP port.

``/metrics`` is the Prometheus exposition; ``/health`` answers 200 while the loop is
turning and its services answer, 503 otherwise (for compose and Kubernetes probes);
``/status`` is a JSON view of the events the dispatcher holds, its breakers' states and
its last outcomes; ``/`` is the same view as a page for people (:mod:`dispatcher.status_page`).

What ``/health`` and ``/status`` know is exported too, read at each scrape, so alert rules
can use it: ``csep_healthy``, ``csep_breaker_open_seconds{service}``,
``csep_importer_halted{importer}``, ``csep_intake_halted``; and the process's own metrics
(``process_start_time_seconds``: restarts).
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily

from dispatcher.status_page import render

#: The outcomes of ``csep_events_total`` (``dispatcher.stages.Outcome``), exported at 0 from
#: the start: a rate or an increase sees the first event of each, not only the second.
OUTCOMES = ("imported", "ignored", "no_importer", "dead_lettered")
#: How many finished events ``/status`` and the status page show.
RECENT_OUTCOMES = 50


class Metrics:
    """The dispatcher's metrics. ``importers`` (the registry's names) have their
    per-importer counters exported at 0 from the start, for the same reason as
    :data:`OUTCOMES`: a series born at its first increment hides that increment from
    ``rate()`` and ``increase()``."""

    def __init__(self, importers: Iterable[str] = ()) -> None:
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
        for outcome in OUTCOMES:
            self.events.labels(outcome)
        for importer in importers:
            self.retries.labels(importer)
            self.write_conflicts.labels(importer)
        ProcessCollector(registry=self.registry)


class _HealthCollector:
    """Exports, at each scrape, what ``/health`` and ``/status`` say."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self):
        status = self.health.status
        healthy = GaugeMetricFamily("csep_healthy", "1 while /health answers 200, else 0")
        healthy.add_metric([], 0 if self.health.problem() else 1)
        breakers = GaugeMetricFamily(
            "csep_breaker_open_seconds",
            "Seconds a service's circuit breaker has been open (0: closed)", labels=["service"])
        for service, state in sorted((status.get("breakers") or {}).items()):
            breakers.add_metric([service],
                                (state.get("open_seconds") or 0) if state.get("open") else 0)
        halted = GaugeMetricFamily("csep_importer_halted",
                                   "1 for an importer halted by a dead-letter streak",
                                   labels=["importer"])
        for importer in status.get("halted_importers") or ():
            halted.add_metric([importer], 1)
        intake = GaugeMetricFamily("csep_intake_halted",
                                   "1 while intake is halted by a dead-letter streak of all events")
        intake.add_metric([], 1 if status.get("intake_halted") else 0)
        return [healthy, breakers, halted, intake]


class Health:
    """What ``/health`` reports: the loop's last turn and whether services are failing."""

    def __init__(self, stale_after: float = 60.0) -> None:
        self.stale_after = stale_after
        self.last_turn = time.monotonic()
        #: The dispatcher's open circuit breakers, as one line (None: all closed).
        self.problems: Callable[[], str | None] = lambda: None
        #: The latest status view, replaced by the loop (at most every second).
        self.status: dict = {}
        #: The last finished events, newest last (appended by the loop's thread): when
        #: each finished, and what builds its entry.
        self._recent: collections.deque[tuple[float, Callable[[], dict[str, Any]]]] = \
            collections.deque(maxlen=RECENT_OUTCOMES)

    def finished(self, entry: Callable[[], dict[str, Any]]) -> None:
        """Record a finished event for ``/status``. ``entry`` builds what it shows (its
        context, outcome and reason) when ``/status`` is read: most are pushed out by
        newer events unread, at intake's speed."""
        self._recent.append((time.time(), entry))

    @property
    def recent(self) -> list[dict[str, Any]]:
        """The last finished events' entries, newest last."""
        return [{"finished_at": at, **entry()} for at, entry in list(self._recent)]

    def view(self) -> dict[str, Any]:
        """What ``/status`` serves: the problem, the loop's view, the last outcomes."""
        return {"problem": self.problem(), **self.status, "recent": self.recent}

    def problem(self) -> str | None:
        if time.monotonic() - self.last_turn > self.stale_after:
            return "loop stalled"
        return self.problems()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # probes every few seconds would drown the event logs


def serve(metrics: Metrics, health: Health, port: int, host: str = "0.0.0.0") -> WSGIServer:
    """Start the HTTP server in a daemon thread; ``shutdown()`` stops it."""
    metrics.registry.register(_HealthCollector(health))
    exposition = make_wsgi_app(metrics.registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/status":
            body = json.dumps(health.view(), default=str)
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body.encode()]
        if environ.get("PATH_INFO") in ("", "/"):
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                      ("Cache-Control", "no-store")])
            return [render(health.view()).encode("utf-8")]
        if environ.get("PATH_INFO") == "/health":
            problem = health.problem()
            status = "503 Service Unavailable" if problem else "200 OK"
            start_response(status, [("Content-Type", "text/plain")])
            return [(problem or "ok").encode() + b"\n"]
        return exposition(environ, start_response)

    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
