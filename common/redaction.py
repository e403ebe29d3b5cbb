"""Removing credentials from text that leaves a process: results, dead letters, logs.

A :class:`Redactor` knows the values to remove: those of the environment variables whose
names :func:`common.credentials.is_credential_name` flags, plus any given explicitly.
Values shorter than :data:`MIN_LENGTH` are ignored: replacing ``"pw"`` everywhere would
mangle the text and protect nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from common.credentials import is_credential_name

REDACTED = "<redacted>"
MIN_LENGTH = 6


class Redactor:
    """``redact(text)`` returns ``text`` with every known secret replaced by ``<redacted>``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first: a secret containing another must not be left half replaced.
        self.secrets = tuple(sorted({s for s in secrets if s and len(s) >= MIN_LENGTH},
                                    key=len, reverse=True))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 extra: Iterable[str] = ()) -> Redactor:
        """The credentials of ``environ`` (default ``os.environ``) plus ``extra``."""
        environ = os.environ if environ is None else environ
        return cls([*(v for k, v in environ.items() if is_credential_name(k)), *extra])

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __bool__(self) -> bool:
        return bool(self.secrets)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts a record's message, arguments, traceback and extra
    fields before any formatter sees them. It never drops a record."""

    _formatter = logging.Formatter()

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redact:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self._formatter.formatException(record.exc_info)
            # Formatters format exc_info anew when it is set, bypassing exc_text.
            record.exc_info = None
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and name != "msg":
                setattr(record, name, self.redact(value))
        return True
