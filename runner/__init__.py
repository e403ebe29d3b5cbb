"""The one-shot runner: ``python -m runner SPEC`` imports one CTS job's output.

Importers may raise :class:`BadDataError` (exit 65, not retried) and
:class:`TemporaryFailure` (exit 75, retried); any other exception exits 70.
"""

from runner.errors import BadDataError, TemporaryFailure

__all__ = ["BadDataError", "TemporaryFailure"]
