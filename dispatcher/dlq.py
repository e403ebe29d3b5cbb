"""Dead-letter records (contracts.md section 5) and their publication.

The value is the original message's JSON object with ``error_dlq`` (a one-line reason) and
``error_dlq_trace`` (a traceback or the runner's stderr tail) added; a value that was not a
JSON object is carried byte for byte. The key is the original key. Headers carry the
context the way Kafka Connect's dead-letter queues do (``__connect.errors.*``), plus the
event's source (``cts`` or ``s3``: a dispatcher replaying the DLQ topic reads the record
as that source's message), for one record of a message with several S3 event records
its index, and the spec, the attempts and the last exit code of the import
(``__csep.errors.*``).

What the dispatcher adds (``error_dlq``, ``error_dlq_trace``, every header) is redacted
(:mod:`common.redaction`): a runner's stderr tail may quote a credential.
"""

from __future__ import annotations

import functools
import json

import attrs

from common.faults import calling
from common.redaction import Redactor


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


#: A minimal record carries at most this much of the original value.
MINIMAL_VALUE_BYTES = 65536


SOURCE_HEADER = "__csep.errors.source"
RECORD_HEADER = "__csep.errors.record.index"


def dead_letter(*, topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None, failure: Failure, minimal: bool = False,
                redact: Redactor | None = None, source: str | None = None,
                record_index: int | None = None) -> DeadLetter:
    """The DLQ record for the message at ``topic/partition/offset``, with the values of
    ``redact`` (default: the credentials of this process's environment) removed from
    what the dispatcher adds.

    ``minimal`` is the fallback when Kafka refused the full record (too large): no trace,
    the original value cut to :data:`MINIMAL_VALUE_BYTES` and carried as it was, and a
    ``__csep.errors.value.truncated`` header with the original size. The coordinates
    still lead to the original message."""
    redact = Redactor.from_env() if redact is None else redact
    failure = attrs.evolve(failure, reason=redact(failure.reason), trace=redact(failure.trace),
                           error_class=redact(failure.error_class),
                           spec_uri=None if failure.spec_uri is None else redact(failure.spec_uri))
    headers_of = functools.partial(_headers, topic=topic, partition=partition, offset=offset,
                                   source=source, record_index=record_index)
    headers = headers_of(failure=failure)
    if not minimal:
        return DeadLetter(key=key, value=_value(value, failure), headers=headers)
    failure = attrs.evolve(failure, trace="")
    headers = headers_of(failure=failure)
    value = value or b""
    if len(value) > MINIMAL_VALUE_BYTES:
        headers.append(("__csep.errors.value.truncated", str(len(value)).encode()))
        value = value[:MINIMAL_VALUE_BYTES]
    return DeadLetter(key=(key or b"")[:1024] or None, value=value, headers=headers)


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


def _headers(*, topic: str, partition: int, offset: int, failure: Failure,
             source: str | None, record_index: int | None) -> list[tuple[str, bytes]]:
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
        SOURCE_HEADER: source,
        RECORD_HEADER: None if record_index is None else str(record_index),
    }
    return [(name, text.encode("utf-8")) for name, text in headers.items() if text is not None]


def is_replay(headers: list[tuple[str, bytes]] | None) -> bool:
    """True for a message read back from a DLQ topic (it carries the DLQ context)."""
    return any(name == "__connect.errors.topic" for name, _ in headers or ())


def source_of(headers: list[tuple[str, bytes]] | None) -> str | None:
    """The source a dead letter recorded for its event (``cts``, ``s3``), if any."""
    for name, value in headers or ():
        if name == SOURCE_HEADER:
            return value.decode("utf-8", "replace")
    return None


class DeadLetterQueue:
    """Publishes dead letters to ``topic``; :meth:`publish` returns once Kafka acknowledged."""

    def __init__(self, producer, topic: str, timeout: float = 10.0) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout = timeout
        #: Built once: the environment's credentials do not change while we run.
        self.redact = Redactor.from_env()

    def publish(self, letter: DeadLetter) -> None:
        """Send and wait for the acknowledgement, at most ``timeout`` seconds (the
        producer's ``max_block_ms`` bounds the send). Raises ServiceFailure (dlq)."""
        self.acknowledged(self.send(letter), wait=True)

    def send(self, letter: DeadLetter):
        """Send without waiting; returns the pending send for :meth:`acknowledged`."""
        with calling("dlq", f"publishing to the DLQ topic {self.topic!r}"):
            return self.producer.send(self.topic, key=letter.key, value=letter.value,
                                      headers=letter.headers)

    def acknowledged(self, pending, wait: bool = False) -> bool:
        """Whether Kafka acknowledged the send (waiting up to ``timeout`` with ``wait``).
        Raises ServiceFailure (dlq) if it refused it or the producer gave up."""
        if not wait and not pending.is_done:
            return False
        with calling("dlq", f"publishing to the DLQ topic {self.topic!r}"):
            pending.get(timeout=self.timeout)
        return True
