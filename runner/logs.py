"""The runner's log: JSON lines on stderr, each carrying the job id once it is known.

Nothing here logs the environment; messages name files, jobs and tables, never
credentials. In case one slips into a message anyway (an importer's exception quoting a
connection string), every record is redacted (:mod:`common.redaction`) before it is
written. Records of other loggers (an importer's own) go the same way at WARNING and up.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from common.redaction import RedactingFilter, Redactor

log = logging.getLogger("runner")


class _JobContext(logging.Filter):
    """Adds ``job_id`` and ``spec`` to every record."""

    def __init__(self) -> None:
        super().__init__()
        self.job_id: str | None = None
        self.spec: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = self.job_id
        record.spec = self.spec
        return True


context = _JobContext()


def configure(level: str = "INFO") -> None:
    """Send the runner's records to stderr as JSON lines, with the credentials of the
    environment redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(context)
    handler.addFilter(RedactingFilter(Redactor.from_env()))
    handler.setFormatter(JsonFormatter(
        "{asctime}{levelname}{name}{message}{job_id}{spec}", style="{",
        rename_fields={"asctime": "time", "levelname": "level"}))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    logging.getLogger().handlers[:] = [handler]
