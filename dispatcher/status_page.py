"""The status page served at ``/`` on the metrics port: ``/status`` for people.

One self-contained HTML document (inline style, no script, no external asset) that
reloads itself every few seconds: health and why, circuit breakers, halted importers, the
events held with their stage and next step, the last outcomes, and links to ``/status``,
``/metrics`` and ``/health``. Everything that comes from events (job ids, object keys,
reasons: user data) is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from typing import Any

#: Seconds between reloads.
REFRESH_SECONDS = 5

#: What an event held at each stage waits for, i.e. its next step.
NEXT_STEP = {"prepare": "prepare (CTS or S3 lookup, spec)",
             "queued": "launch a runner (slot, backoff or another attempt)",
             "running": "the runner exits",
             "finish": "finish (DLQ record, CTS meta)"}

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0 0 .4em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
.health { padding: .6em 1em; border-radius: 6px; font-weight: 600; }
.ok { background: #dff5e1; color: #14521c; }
.bad { background: #fde2e1; color: #7a1410; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #e3e3e3;
         vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
td.reason { max-width: 40em; overflow-wrap: anywhere; }
.none { color: #777; font-style: italic; }
.open, .dead_lettered { color: #a1160f; font-weight: 600; }
.imported { color: #14521c; }
nav a { margin-right: 1em; }
footer { margin-top: 2em; color: #777; font-size: .9em; }
"""


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def _seconds(value: Any) -> str:
    if value is None:
        return "-"
    seconds = float(value)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """``rows`` are already escaped HTML cells."""
    rows = list(rows)
    if not rows:
        return f'<p class="none">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: Any, css: str | None = None) -> str:
    return f'<td class="{escape(css)}">{_text(value)}</td>' if css else f"<td>{_text(value)}</td>"


def _where(event: Mapping[str, Any]) -> str:
    where = f"{event.get('topic')}/{event.get('partition')}:{event.get('offset')}"
    return where + (f" #{event['record']}" if event.get("record") is not None else "")


def _subject(event: Mapping[str, Any]) -> Any:
    return event.get("job_id") or event.get("object")


def _breakers(breakers: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [(_td(service), _td("open" if state.get("open") else "closed",
                               "open" if state.get("open") else None),
             _td(_seconds(state.get("open_seconds")) if state.get("open") else None),
             _td(state.get("failures")), _td(state.get("reason"), "reason"))
            for service, state in sorted(breakers.items())]
    return _table(("service", "state", "open for", "failures", "last reason"), rows,
                  "No service has failed: every breaker is closed.")


def _events(events: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for event in events:
        wait = event.get("next_step_in_seconds")
        stage = event.get("stage")
        step = NEXT_STEP.get(stage, stage) if isinstance(stage, str) else stage
        rows.append((_td(_subject(event)), _td(event.get("source")), _td(_where(event)),
                     _td(event.get("stage")), _td(event.get("importer")),
                     _td(event.get("attempt")), _td(_seconds(event.get("runner_age_seconds"))),
                     _td(f"{step}, in {_seconds(wait)}" if wait else step)))
    return _table(("job / object", "source", "record", "stage", "importer", "attempt",
                   "runner age", "next step"), rows, "No event held.")


def _recent(recent: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for event in reversed(recent):
        when = event.get("finished_at")
        at = (datetime.fromtimestamp(when, timezone.utc).strftime("%H:%M:%S")
              if isinstance(when, (int, float)) else None)
        outcome = event.get("outcome")
        rows.append((_td(at), _td(_subject(event)), _td(outcome, str(outcome)),
                     _td(event.get("importer")), _td(event.get("attempt")),
                     _td(_where(event)), _td(event.get("error_class")),
                     _td(event.get("reason"), "reason")))
    return _table(("finished (UTC)", "job / object", "outcome", "importer", "attempts",
                   "record", "error class", "reason"), rows, "No event finished yet.")


def render(view: Mapping[str, Any], now: datetime | None = None) -> str:
    """The page for ``view``, the dict ``/status`` serves (``Health.view()``): problem,
    events, breakers, halted, halted_importers, intake_halted, runners_in_flight, recent."""
    now = now or datetime.now(timezone.utc)
    problem = view.get("problem")
    health = (f'<p class="health bad" id="health">Unhealthy (/health answers 503): '
              f"{escape(str(problem))}</p>" if problem else
              '<p class="health ok" id="health">Healthy: /health answers 200.</p>')
    events = view.get("events") or []
    halted = view.get("halted")
    halted_html = (f'<p class="open">{escape(str(halted))}</p>' if halted else
                   '<p class="none">No importer is halted; intake is not halted.</p>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{"UNHEALTHY" if problem else "ok"}: CDM Spark Events dispatcher</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>CDM Spark Events dispatcher</h1>
<nav><a href="/status">/status (JSON)</a><a href="/metrics">/metrics</a>\
<a href="/health">/health</a></nav>
{health}
<p>{len(events)} event(s) held, {_text(view.get("runners_in_flight", 0))} runner(s) running.</p>
<h2>Circuit breakers</h2>
{_breakers(view.get("breakers") or {})}
<h2>Halted importers</h2>
{halted_html}
<h2>Events held</h2>
{_events(events)}
<h2>Last outcomes</h2>
{_recent(view.get("recent") or [])}
<footer>Page made {now.strftime("%Y-%m-%d %H:%M:%S")} UTC; it reloads every
{REFRESH_SECONDS} s.</footer>
</body>
</html>
"""
