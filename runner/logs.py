"""The runner's log: JSON lines on stderr (:mod:`common.logs`), each carrying the job id
and the spec once they are known.

Nothing here logs the environment; messages name files, jobs and tables, never
credentials. In case one slips into a message anyway (an importer's exception quoting a
connection string), every record is redacted before it is written. Records of other
loggers (an importer's own) go the same way at WARNING and up.
"""

from __future__ import annotations

import logging

from common import logs

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
    """Send the runner's records to stderr as JSON lines, redacted."""
    logs.configure(level, logger="runner", filters=[context])
