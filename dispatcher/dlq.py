"""Dead-letter records (contracts.md section 5) and their publication.

The value is the original message's JSON object with ``error_dlq`` (a one-line reason) and
``error_dlq_trace`` (a traceback or the runner's stderr tail) added; a value that was not a
JSON object is carried byte for byte. The key is the original key. Headers carry the
context the way Kafka Connect's dead-letter queues do (``__connect.errors.*``), plus the
spec, the attempts and the last exit code of the import (``__csep.errors.*``).

What the dispatcher adds (``error_dlq``, ``error_dlq_trace``, every header) is redacted
(:mod:`common.redaction`): a runner's stderr tail may quote a credential.
"""

from __future__ import annotations

import json

import attrs

from common.redaction import Redactor
from dispatcher.errors import InfrastructureError


@attrs.frozen
class Failure:
    """Why an event is dead-lettered."""

    reason: str
    error_class: str
    trace: str = ""
    spec_uri: str | None = None
    attempts: int | None = None
    exit_code: int | None = None


@attrs.frozen
class DeadLetter:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def dead_letter(*, topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None, failure: Failure,
                redact: Redactor | None = None) -> DeadLetter:
    """The DLQ record for the message at ``topic/partition/offset``, with the values of
    ``redact`` (default: the credentials of this process's environment) removed from
    what the dispatcher adds."""
    redact = Redactor.from_env() if redact is None else redact
    failure = attrs.evolve(failure, reason=redact(failure.reason), trace=redact(failure.trace),
                           error_class=redact(failure.error_class),
                           spec_uri=None if failure.spec_uri is None else redact(failure.spec_uri))
    return DeadLetter(key=key, value=_value(value, failure), headers=_headers(
        topic=topic, partition=partition, offset=offset, failure=failure))


def _value(value: bytes | None, failure: Failure) -> bytes:
    try:
        data = json.loads(value) if value is not None else None
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        return value if value is not None else b""
    data["error_dlq"] = failure.reason
    data["error_dlq_trace"] = failure.trace
    return json.dumps(data).encode("utf-8")


def _headers(*, topic: str, partition: int, offset: int, failure: Failure) -> list[tuple[str, bytes]]:
    headers = {
        "__connect.errors.topic": topic,
        "__connect.errors.partition": str(partition),
        "__connect.errors.offset": str(offset),
        "__connect.errors.exception.class.name": failure.error_class,
        "__connect.errors.exception.message": failure.reason,
        "__connect.errors.exception.stacktrace": failure.trace,
        "__csep.errors.spec.uri": failure.spec_uri,
        "__csep.errors.attempts": None if failure.attempts is None else str(failure.attempts),
        "__csep.errors.exit.code": None if failure.exit_code is None else str(failure.exit_code),
    }
    return [(name, text.encode("utf-8")) for name, text in headers.items() if text is not None]


def is_replay(headers: list[tuple[str, bytes]] | None) -> bool:
    """True for a message read back from a DLQ topic (it carries the DLQ context)."""
    return any(name == "__connect.errors.topic" for name, _ in headers or ())


class DeadLetterQueue:
    """Publishes dead letters to ``topic``; :meth:`publish` returns once Kafka acknowledged."""

    def __init__(self, producer, topic: str, timeout: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout = timeout

    def publish(self, letter: DeadLetter) -> None:
        """Send and wait for the acknowledgement. Raises InfrastructureError on failure."""
        from kafka.errors import KafkaError

        try:
            self.producer.send(self.topic, key=letter.key, value=letter.value,
                               headers=letter.headers).get(timeout=self.timeout)
        except KafkaError as error:
            raise InfrastructureError(
                f"DLQ topic {self.topic!r} refused a record: {type(error).__name__}: {error}",
                "kafka") from error
