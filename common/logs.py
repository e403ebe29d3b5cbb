"""One log setup for the dispatcher and the runner: JSON lines on stderr, redacted.

Every field a record carries in ``extra`` (or from a filter: the runner's job id)
becomes a top-level JSON key next to time, level, logger and message. Every record is
redacted first (:mod:`common.redaction`): the values of the environment's credential
variables (the CTS token, S3 and metastore secrets) never reach a line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from pythonjsonlogger.json import JsonFormatter

from common.redaction import RedactingFilter, Redactor


def configure(level: str = "INFO", *, logger: str | None = None,
              filters: Iterable[logging.Filter] = (), secrets: Iterable[str] = (),
              quiet: Iterable[str] = ()) -> logging.Handler:
    """Send records to stderr as JSON lines; return the handler.

    ``logger`` (default: all) logs at ``level``; with a named ``logger``, other loggers'
    records (an importer's own) still go out, at WARNING and up. ``filters`` add fields;
    ``secrets`` are redacted besides the environment's; ``quiet`` loggers log errors only.
    """
    handler = logging.StreamHandler(sys.stderr)
    for extra in filters:
        handler.addFilter(extra)
    handler.addFilter(RedactingFilter(Redactor.from_env(extra=secrets)))
    handler.setFormatter(JsonFormatter(
        "{asctime}{levelname}{name}{message}", style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if logger is None else logging.WARNING)
    if logger is not None:
        logging.getLogger(logger).setLevel(level.upper())
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR)
    return handler
