"""The two kinds of failure the dispatcher tells apart.

An :class:`EventRejected` is about one event (the CTS has no such job, the job document is
unusable): the event goes to the DLQ and the loop moves on. An
:class:`InfrastructureError` is about a service every event needs (the CTS is down, S3 is
unreachable, Kafka refuses to produce): the event is retried, never dead-lettered, and if
the failure persists past the budget the dispatcher stops.
"""

import contextlib
from collections.abc import Iterator


class EventRejected(Exception):
    """This event cannot be processed, now or later: dead-letter it."""


class InfrastructureError(Exception):
    """A shared service failed; the same step may succeed later."""

    def __init__(self, message: str, service: str) -> None:
        super().__init__(message)
        self.service = service


@contextlib.contextmanager
def s3_failures(what: str) -> Iterator[None]:
    """Turn any S3 failure inside the block into an InfrastructureError about ``what``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as error:
        raise InfrastructureError(f"S3 {what}: {type(error).__name__}: {error}", "s3") from error
