"""The one-shot runner: ``python -m runner SPEC`` imports one CTS job's output.

Importers may raise :class:`BadDataError` (exit 65, not retried),
:class:`TemporaryFailure` (exit 75, retried) and :class:`WriteConflict` (exit 75, retried
without spending an attempt: another writer kept committing to the table first). A
``ValueError`` or ``KeyError`` is bad data too (exit 65: what importers written against
the importer contract alone raise for a job they cannot import); any other exception exits 70.
"""

from runner.errors import BadDataError, TemporaryFailure, WriteConflict

__all__ = ["BadDataError", "TemporaryFailure", "WriteConflict"]
