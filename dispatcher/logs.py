"""JSON logs on stderr. Event context (job id, coordinates, attempt) rides in ``extra``.

    log.info("runner exited", extra=event_context(work))

Every field of ``extra`` becomes a top-level JSON key next to time, level and message.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(
        "{asctime}{levelname}{name}{message}", style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python logs every connection hiccup at INFO/WARNING; our own lines say what matters.
    logging.getLogger("kafka").setLevel(logging.ERROR)
