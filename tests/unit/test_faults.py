"""The fault classification table of common.faults, row by row, with the exceptions the
clients really raise."""

from __future__ import annotations

import pytest
import requests
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
)

from common.faults import (
    Fault,
    ServiceFailure,
    calling,
    causes,
    classify,
    fault_of,
    http_fault,
    s3_fault,
)

EVENT, INFRA = Fault.EVENT, Fault.INFRASTRUCTURE


def s3_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize("code, status, fault", [
    ("InvalidRequest", 400, EVENT), ("KeyTooLongError", 400, EVENT),
    ("InvalidArgument", 400, EVENT), ("400", 400, EVENT), ("NoSuchKey", 404, EVENT),
    ("404", 404, EVENT), ("AccessDenied", 403, INFRA), ("InvalidAccessKeyId", 403, INFRA),
    ("SignatureDoesNotMatch", 403, INFRA), ("403", 403, INFRA), ("NoSuchBucket", 404, INFRA),
    ("InternalError", 500, INFRA), ("ServiceUnavailable", 503, INFRA), ("SlowDown", 503, INFRA),
    ("RequestTimeout", 400, INFRA), ("502", 502, INFRA), ("TooManyRequests", 429, INFRA),
])
def test_s3_answers(code, status, fault):
    assert s3_fault(s3_error(code, status)) is fault


@pytest.mark.parametrize("error, fault", [
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), INFRA),
    (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), INFRA),
    (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), INFRA),
    (NoCredentialsError(), INFRA),
    (ConnectionResetError(), INFRA),
    (ParamValidationError(report="Key too long"), EVENT),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), EVENT),
])
def test_s3_transport_failures(error, fault):
    assert s3_fault(error) is fault


@pytest.mark.parametrize("status, fault", [
    (400, EVENT), (404, EVENT), (409, EVENT), (422, EVENT), (401, INFRA), (403, INFRA),
    (408, INFRA), (429, INFRA), (500, INFRA), (502, INFRA), (503, INFRA), (504, INFRA),
    (302, INFRA),
])
def test_cts_http_answers(status, fault):
    assert http_fault(status) is fault


@pytest.mark.parametrize("error, fault", [
    (requests.ConnectionError("refused"), INFRA), (requests.ReadTimeout("slow"), INFRA),
    (requests.exceptions.ChunkedEncodingError("cut"), INFRA), (TimeoutError(), INFRA),
    (KeyError("id"), EVENT),
])
def test_cts_transport_failures(error, fault):
    assert classify("cts", error) is fault


@pytest.mark.parametrize("service", ["kafka", "dlq"])
@pytest.mark.parametrize("error, fault", [
    (MessageSizeTooLargeError(), EVENT), (RecordListTooLargeError(), EVENT),
    (KafkaTimeoutError(), INFRA), (KafkaConnectionError(), INFRA),
    (NotLeaderForPartitionError(), INFRA),
])
def test_kafka_failures(service, error, fault):
    assert classify(service, error) is fault


def test_launcher_failures_are_infrastructure_and_unknown_services_the_event_s():
    assert classify("launcher", RuntimeError("no docker")) is INFRA
    assert classify("somewhere", RuntimeError("?")) is EVENT


def test_calling_wraps_with_the_service_and_what_was_being_done():
    with pytest.raises(ServiceFailure) as caught, calling("s3", "writing the spec"):
        raise s3_error("KeyTooLongError", 400)
    failure = caught.value
    assert (failure.service, failure.fault) == ("s3", EVENT)
    assert str(failure).startswith("s3: writing the spec: ClientError KeyTooLongError:")
    assert isinstance(failure.__cause__, ClientError)


def test_anything_that_is_not_a_service_failure_is_the_event_s_fault():
    assert fault_of(RecursionError()) is EVENT
    assert fault_of(ServiceFailure("cts", INFRA, "down")) is INFRA


def test_causes_follow_cause_then_context_and_stop_on_a_cycle():
    root = KeyError("root")
    try:
        try:
            raise root
        except KeyError as handled:
            raise ValueError("while handling") from handled
    except ValueError as caught:
        wrapped = RuntimeError("wrapped")
        wrapped.__cause__ = caught
    assert [str(e) for e in causes(wrapped)] == ["wrapped", "while handling", "'root'"]

    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__context__ = second, first
    assert list(causes(first)) == [first, second]
    assert list(causes(None)) == []
