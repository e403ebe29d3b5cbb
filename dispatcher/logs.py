"""JSON logs on stderr. Event context (job id, coordinates, attempt) rides in ``extra``.

    log.info("runner exited", extra=event_context(work))

Every field of ``extra`` becomes a top-level JSON key next to time, level and message.
Every record is redacted first (:mod:`common.redaction`): the values of the credential
variables of the environment (the CTS token, S3 and metastore secrets) never reach a line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from pythonjsonlogger.json import JsonFormatter

from common.redaction import RedactingFilter, Redactor


def configure(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """JSON lines on stderr for every logger, redacting the environment's credentials
    and ``secrets``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(Redactor.from_env(extra=secrets)))
    handler.setFormatter(JsonFormatter(
        "{asctime}{levelname}{name}{message}", style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python logs every connection hiccup at INFO/WARNING; our own lines say what matters.
    logging.getLogger("kafka").setLevel(logging.ERROR)
