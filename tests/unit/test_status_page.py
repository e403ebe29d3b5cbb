"""The status page: everything /status knows, readable, self-contained, and escaped."""

from __future__ import annotations

import re
import time
import urllib.request
from datetime import datetime, timezone

from dispatcher.metrics import Health, Metrics, serve
from dispatcher.status_page import REFRESH_SECONDS, render
from stack.process import free_ports

EVIL = '<img src=x onerror="alert(1)">&'
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def view(**overrides) -> dict:
    return {
        "problem": "cts failing for 200s: HTTP 503", "runners_in_flight": 1,
        "events": [{"job_id": "job-running", "source": "cts", "topic": "cts-jobs",
                    "partition": 2, "offset": 41, "record": None, "stage": "running",
                    "importer": "checkm2", "attempt": 2, "runner_age_seconds": 75.5,
                    "next_step_in_seconds": None, "outcome": None},
                   {"job_id": EVIL, "source": "cts", "topic": "cts-jobs", "partition": 0,
                    "offset": 7, "record": None, "stage": "queued", "importer": "checkm2",
                    "attempt": 1, "runner_age_seconds": None, "next_step_in_seconds": 12.0,
                    "outcome": None}],
        "breakers": {"cts": {"open": True, "failures": 4, "open_seconds": 200.0,
                             "reason": "HTTP 503 <b>down</b>"},
                     "s3": {"open": False, "failures": 0, "open_seconds": 0, "reason": ""}},
        "halted": "importer seqkit halted after 20 dead-lettered events in a row (last: x)",
        "halted_importers": ["seqkit"], "intake_halted": False,
        "recent": [{"finished_at": NOW.timestamp(), "job_id": "job-done", "topic": "cts-jobs",
                    "partition": 1, "offset": 3, "outcome": "imported", "importer": "checkm2",
                    "attempt": 1, "reason": None},
                   {"finished_at": NOW.timestamp() + 5, "job_id": None,
                    "object": "s3://dataplane/raw/a.tsv", "topic": "s3-events", "partition": 0,
                    "offset": 9, "record": 1, "outcome": "dead_lettered", "importer": None,
                    "attempt": None, "error_class": "MalformedMessage",
                    "reason": f"Records[1]: bad {EVIL}"}],
        **overrides}


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_the_page_shows_health_breakers_halts_events_and_outcomes():
    page = render(view(), NOW)
    text = text_of(page)
    assert "Unhealthy (/health answers 503): cts failing for 200s: HTTP 503" in text
    assert "cts open 3.3 min 4 HTTP 503 &lt;b&gt;down&lt;/b&gt;" in text
    assert "s3 closed" in text
    assert "importer seqkit halted after 20 dead-lettered events" in text
    assert "job-running cts cts-jobs/2:41 running checkm2 2 75.5 s the runner exits" in text
    assert "launch a runner (slot, backoff or another attempt), in 12.0 s" in text
    # Newest outcome first.
    assert text.index("s3://dataplane/raw/a.tsv") < text.index("job-done")
    assert ("10:00:05 s3://dataplane/raw/a.tsv dead_lettered - - s3-events/0:9 #1 "
            "MalformedMessage") in text
    assert "10:00:00 job-done imported checkm2 1 cts-jobs/1:3" in text
    for link in ("/status", "/metrics", "/health"):
        assert f'href="{link}"' in page
    assert f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' in page


def test_everything_from_events_is_escaped():
    page = render(view(), NOW)
    assert "<img" not in page and "<b>down" not in page
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;") == 2


def test_the_page_is_self_contained():
    page = render(view(), NOW)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert re.findall(r'href="([^"]+)"', page) == ["/status", "/metrics", "/health"]


def test_a_quiet_healthy_dispatcher():
    text = text_of(render({"problem": None, "events": [], "breakers": {}, "halted": None,
                           "runners_in_flight": 0, "recent": []}, NOW))
    assert "Healthy: /health answers 200." in text
    assert "every breaker is closed" in text and "No event held." in text
    assert "No event finished yet." in text and "No importer is halted" in text


def test_the_page_is_served_at_the_root_of_the_metrics_port():
    health = Health()
    health.status = {"events": [], "breakers": {}, "runners_in_flight": 0}
    health.finished(lambda: {"job_id": "job-1", "topic": "t", "partition": 0, "offset": 1,
                             "outcome": "imported"})
    port = free_ports(1)[0]
    server = serve(Metrics(), health, port, host="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            kind, body = answer.headers["Content-Type"], answer.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
    finally:
        server.shutdown()
    assert kind == "text/html; charset=utf-8"
    assert "job-1" in body and time.strftime("%Y") in body
    assert "csep_events_total" in metrics
