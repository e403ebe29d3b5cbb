"""The status page in a real headless browser (Chromium), on a dispatcher working on the
stack: events held and finished are on it, escaped, and the page raises no script error.
The screenshot goes to reports/status-page.png (ignored by git) for the test report."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from stack.browser import look
from tests.integration.dispatcher_lane import event, wait_until

REPORTS = Path(__file__).resolve().parents[2] / "reports"
#: A job id is user data, and this one is valid (one path segment): the page must show
#: it as text, never make it an element.
EVIL = '<img src=x onerror="console.error(1)">'


def status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        return json.loads(answer.read())


def test_the_browser_shows_the_stack_s_events_on_the_status_page(lane, tmp_path):
    lane.job("quick-page", "quick")
    lane.job("sleep-60-page", "sleepy")
    lane.complete("quick-page")
    lane.publish(event(EVIL))  # unknown to the CTS: dead-lettered
    lane.complete("sleep-60-page")
    dispatcher = lane.dispatcher()
    port = dispatcher.config["metrics_port"]
    wait_until(lambda: lane.committed()[0] == 2, 60, "the first two events finished")
    wait_until(lambda: any(e["stage"] == "running" and e["runner_age_seconds"]
                           for e in status(port)["events"]), 60, "the sleepy runner running")

    seen = look(f"http://127.0.0.1:{port}/", tmp_path / "browser", name="status-page")

    assert seen.console == (), seen.console
    dom = seen.dom
    assert "Healthy: /health answers 200." in dom
    held = dom[dom.index("Events held"):dom.index("Last outcomes")]
    assert "sleep-60-page" in held and "dispatch_test_sleepy" in held and "running" in held
    assert "the runner exits" in held
    recent = dom[dom.index("Last outcomes"):]
    assert "quick-page" in recent and "imported" in recent
    assert "dead_lettered" in recent and "JobNotFound" in recent
    assert "&lt;img src=x onerror=\"console.error(1)\"&gt;" in recent
    assert "<img" not in dom
    png = seen.screenshot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    REPORTS.mkdir(exist_ok=True)
    shutil.copy(seen.screenshot, REPORTS / "status-page.png")


def test_the_browser_check_does_see_script_errors(tmp_path):
    """The check above would catch a script error: the same look at a page with one."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>notAFunction();</script>")
    seen = look(page.as_uri(), tmp_path / "browser", name="broken")
    assert any("notAFunction is not defined" in line for line in seen.console), seen.console
