"""The CTS client against the CTS double: documents, meta updates, error classes, the
admin token's reach, deadlines and keep-alive reuse after errors."""

import threading
import time

import pytest

from common.faults import Fault, ServiceFailure
from dispatcher.cts import CtsClient, JobNotFound
from dispatcher.errors import EventRejected


@pytest.fixture
def client(stack):
    return CtsClient(stack.cts.url, stack.cts.token, timeout=5)


def test_job_and_meta(stack, client):
    stack.cts.add_job({"id": "cts-client-1", "user": "u", "admin_meta": {}})
    assert client.get_job("cts-client-1")["user"] == "u"
    client.set_meta("cts-client-1", "cse_event_processing_start")
    [update] = stack.cts.updates_for("cts-client-1")
    assert list(update.set_fields) == ["cse_event_processing_start"]


def test_errors_are_classified(stack, client):
    with pytest.raises(JobNotFound, match="40040") as missing:
        client.get_job("no-such-job-here")
    assert missing.value.fault is Fault.EVENT
    stack.cts.outage(400)
    try:
        with pytest.raises(ServiceFailure) as rejected:
            client.get_job("cts-client-1")
        assert rejected.value.fault is Fault.EVENT and not isinstance(rejected.value, JobNotFound)
        stack.cts.outage(503)
        with pytest.raises(ServiceFailure, match="HTTP 503") as unavailable:
            client.get_job("cts-client-1")
        assert unavailable.value.fault is Fault.INFRASTRUCTURE
    finally:
        stack.cts.outage(None)
    with pytest.raises(ServiceFailure, match="HTTP 401") as unauthorized:
        CtsClient(stack.cts.url, "wrong-token").get_job("cts-client-1")
    assert unauthorized.value.fault is Fault.INFRASTRUCTURE
    with pytest.raises(ServiceFailure, match="ConnectionError") as refused:
        CtsClient("http://127.0.0.1:9", stack.cts.token, timeout=2).get_job("x")
    assert refused.value.fault is Fault.INFRASTRUCTURE


def test_ids_are_one_encoded_segment_and_the_token_goes_nowhere_else(stack, client):
    stack.cts.add_job({"id": "a/b?c#d", "user": "u", "admin_meta": {}})
    assert client.get_job("a/b?c#d")["id"] == "a/b?c#d"
    client.set_meta("a/b?c#d", "cse_event_processing_start")
    assert stack.cts.updates_for("a/b?c#d")
    before = len(stack.cts.requests)
    for bad in ["..", ".", "", "x\x00y"]:
        with pytest.raises(EventRejected, match="not usable in a CTS URL"):
            client.get_job(bad)
        with pytest.raises(EventRejected):
            client.set_meta(bad, "cse_event_processing_start")
    with pytest.raises(JobNotFound):
        client.set_meta("../../etc/passwd", "cse_event_processing_start")
    paths = [path for _, path in stack.cts.requests[before:]]
    assert paths == ["/admin/jobs/..%2F..%2Fetc%2Fpasswd/meta"]


def test_keep_alive_connection_is_reused_correctly_after_errors(stack, client):
    stack.cts.add_job({"id": "keepalive-1", "user": "u", "admin_meta": {}})
    # A refused PUT with a body, then a good request on the same connection.
    stack.cts.outage(503)
    try:
        with pytest.raises(ServiceFailure):
            client.set_meta("keepalive-1", "cse_event_processing_start")
    finally:
        stack.cts.outage(None)
    with pytest.raises(JobNotFound):
        client.set_meta("no-such-keepalive", "cse_event_processing_start")
    assert client.get_job("keepalive-1")["id"] == "keepalive-1"
    client.set_meta("keepalive-1", "cse_event_processing_complete")
    assert [list(u.set_fields) for u in stack.cts.updates_for("keepalive-1")] == [
        ["cse_event_processing_complete"]]


def test_a_cts_that_never_answers_fails_within_the_deadline(stack):
    stack.cts.add_job({"id": "hung-1", "user": "u", "admin_meta": {}})
    client = CtsClient(stack.cts.url, stack.cts.token, timeout=1.5)
    stack.cts.hang(True)
    try:
        started = time.monotonic()
        with pytest.raises(ServiceFailure) as hung:
            client.get_job("hung-1")
        elapsed = time.monotonic() - started
    finally:
        stack.cts.hang(False)
    assert hung.value.fault is Fault.INFRASTRUCTURE
    assert elapsed < 60  # the deadline, not forever
    done = threading.Event()
    threading.Thread(target=lambda: (client.get_job("hung-1"), done.set()), daemon=True).start()
    assert done.wait(10)
