"""The CTS client against the CTS double: documents, meta updates and error classes."""

import pytest

from dispatcher.cts import JobNotFound, CtsClient
from dispatcher.errors import EventRejected, InfrastructureError


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
    with pytest.raises(JobNotFound, match="40040"):
        client.get_job("no-such-job-here")
    stack.cts.outage(400)
    try:
        with pytest.raises(EventRejected) as rejected:
            client.get_job("cts-client-1")
        assert not isinstance(rejected.value, JobNotFound)
        stack.cts.outage(503)
        with pytest.raises(InfrastructureError, match="HTTP 503"):
            client.get_job("cts-client-1")
    finally:
        stack.cts.outage(None)
    with pytest.raises(InfrastructureError, match="HTTP 401"):
        CtsClient(stack.cts.url, "wrong-token").get_job("cts-client-1")
    with pytest.raises(InfrastructureError, match="ConnectionError"):
        CtsClient("http://127.0.0.1:9", stack.cts.token, timeout=2).get_job("x")
