"""Whose fault is a failed call: this event's, or a service's every event needs.

One table, shared by the dispatcher and the runner. A failure that is about the event's
own data (a key S3 refuses, a job the CTS does not have, a record Kafka finds too large)
is the event's fault: it goes to the dead-letter queue and the loop moves on. A failure
that would hit any event alike (a connection refused, a timeout, a 5xx, a credential the
service rejects) is the infrastructure's: the event waits, its attempts are not spent,
and the service's circuit breaker counts it.

==========  ==============================================================  ==============
service     answer                                                          fault
==========  ==============================================================  ==============
s3          HTTP 401/403 (AccessDenied, InvalidAccessKeyId,                 infrastructure
            SignatureDoesNotMatch, ...), NoSuchBucket of the spec store
s3          HTTP 5xx, 408, 429, SlowDown, RequestTimeout                    infrastructure
s3          connection errors, timeouts, missing credentials                infrastructure
s3          other HTTP 4xx (InvalidRequest, KeyTooLongError,                event
            InvalidArgument, NoSuchKey, 400, 404), a request botocore
            refuses to build (ParamValidationError)
cts         HTTP 401, 403, 408, 429, 5xx, 3xx, a 200 that is not JSON       infrastructure
cts         connection errors, timeouts (a total deadline per request)      infrastructure
cts         HTTP 400, 404 (appcode 40040: no such job), 422, other 4xx      event
kafka       MessageSizeTooLargeError, RecordListTooLargeError,              event
            InvalidRecordError (the record itself)
kafka       anything else (timeouts, no broker, not the leader, ...)        infrastructure
            (the DLQ's producer is its own service, ``dlq``, classified alike)
launcher    the runner could not be started (no docker daemon, API down)    infrastructure
(any)       an exception not listed for its service                         event
==========  ==============================================================  ==============

Anything raised outside a service call (a bug, a ``RecursionError`` on odd input) is the
event's fault too: the event is dead-lettered with the traceback, and nothing stops.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator


class Fault(enum.StrEnum):
    EVENT = "event"
    INFRASTRUCTURE = "infrastructure"


class ServiceFailure(Exception):
    """A call to ``service`` failed. ``fault`` says whose fault it is; ``error_class``
    names what failed (the original exception's type, or ``HTTP <status>``)."""

    def __init__(self, service: str, fault: Fault, message: str,
                 error_class: str | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.fault = fault
        self.error_class = error_class or type(self).__name__


def fault_of(error: BaseException) -> Fault:
    """The fault of anything a step raised: a ServiceFailure says; the rest is the event's."""
    return error.fault if isinstance(error, ServiceFailure) else Fault.EVENT


# -- HTTP (the CTS) ------------------------------------------------------------------------

def http_fault(status: int) -> Fault:
    """A non-2xx HTTP answer: 4xx other than 401/403/408/429 is about the request."""
    if 400 <= status < 500 and status not in (401, 403, 408, 429):
        return Fault.EVENT
    return Fault.INFRASTRUCTURE


# -- S3 ------------------------------------------------------------------------------------

_S3_INFRASTRUCTURE_CODES = frozenset({
    "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AccountProblem",
    "NoSuchBucket", "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
    "RequestTimeTooSkewed", "Throttling", "RequestLimitExceeded"})


def s3_error_code(error: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (``NoSuchKey``...), else None."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    return response.get("Error", {}).get("Code")


def s3_fault(error: BaseException) -> Fault:
    """Classify an exception raised by a boto3 S3 call (see the module's table)."""
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    if isinstance(error, ClientError):
        code = s3_error_code(error)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in _S3_INFRASTRUCTURE_CODES:
            return Fault.INFRASTRUCTURE
        if 400 <= status < 500:
            return http_fault(status)
        if status == 0 and code and not code.isdigit():
            return Fault.EVENT  # a named S3 error without a status: about the request
        return Fault.INFRASTRUCTURE
    if isinstance(error, ParamValidationError):
        return Fault.EVENT
    if isinstance(error, (BotoCoreError, OSError)):
        return Fault.INFRASTRUCTURE
    return Fault.EVENT


# -- Kafka ---------------------------------------------------------------------------------

_KAFKA_EVENT_ERRORS = frozenset({"MessageSizeTooLargeError", "RecordListTooLargeError",
                                 "InvalidRecordError"})


def kafka_fault(error: BaseException) -> Fault:
    """A Kafka call's failure: the record's own size or shape is the event's fault."""
    if type(error).__name__ in _KAFKA_EVENT_ERRORS:
        return Fault.EVENT
    return Fault.INFRASTRUCTURE


# -- requests (the CTS client) -------------------------------------------------------------

def requests_fault(error: BaseException) -> Fault:
    """A requests/urllib3 transport failure, a timeout or an OSError: the service's."""
    import requests

    if isinstance(error, (requests.RequestException, OSError)):
        return Fault.INFRASTRUCTURE
    return Fault.EVENT


_CLASSIFIERS = {"s3": s3_fault, "kafka": kafka_fault, "dlq": kafka_fault, "cts": requests_fault,
                "launcher": lambda error: Fault.INFRASTRUCTURE}


def classify(service: str, error: BaseException) -> Fault:
    """The fault of ``error`` raised by a call to ``service`` (see the module's table)."""
    if isinstance(error, ServiceFailure):
        return error.fault
    classifier = _CLASSIFIERS.get(service)
    return classifier(error) if classifier else Fault.EVENT


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """``error``, then the exception it was raised from (``__cause__``) or while handling
    (``__context__``), and so on; each once, even in a cycle."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def one_line(error: BaseException | str, limit: int = 500) -> str:
    """``error``'s message (or a text) on one line, bounded."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + "..."


@contextlib.contextmanager
def calling(service: str, what: str) -> Iterator[None]:
    """Turn any exception inside the block into a :class:`ServiceFailure` of ``service``,
    classified by the table, with a message saying what was being done."""
    try:
        yield
    except ServiceFailure:
        raise
    except Exception as error:
        code = s3_error_code(error) if service == "s3" else None
        name = type(error).__name__ + (f" {code}" if code else "")
        raise ServiceFailure(service, classify(service, error),
                             f"{service}: {what}: {name}: {one_line(error)}",
                             type(error).__name__) from error
