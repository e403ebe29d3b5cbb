"""The CTS test double speaks contracts.md section 2, errors included."""

import pytest
import requests

from stack.cts_double import CTSDouble


@pytest.fixture
def cts():
    double = CTSDouble().start()
    double.add_job({"id": "job1", "user": "alice", "state": "complete", "admin_meta": {}})
    yield double
    double.stop()


def _auth(cts):
    return {"Authorization": f"Bearer {cts.token}"}


def test_service_root(cts):
    body = requests.get(cts.url + "/", timeout=5).json()
    assert body["service_name"] == "CDM Task Service"


def test_get_job_needs_the_admin_token(cts):
    missing = requests.get(cts.url + "/admin/jobs/job1", timeout=5)
    wrong = requests.get(cts.url + "/admin/jobs/job1", timeout=5,
                         headers={"Authorization": "Bearer nope"})
    assert missing.status_code == wrong.status_code == 401
    job = requests.get(cts.url + "/admin/jobs/job1", headers=_auth(cts), timeout=5).json()
    assert job["user"] == "alice"


def test_unknown_job_is_404_with_appcode_40040(cts):
    response = requests.get(cts.url + "/admin/jobs/nope", headers=_auth(cts), timeout=5)
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["httpcode"], error["appcode"]) == (404, 40040)


def test_meta_update_is_recorded_and_applied(cts):
    body = {"set_fields": {"cse_event_processing_start": "2026-11-20T10:15:00+00:00"},
            "unset_keys": ["cse_event_processing_error"]}
    response = requests.put(cts.url + "/admin/jobs/job1/meta", json=body, headers=_auth(cts),
                            timeout=5)
    assert response.status_code == 200
    assert response.json()["admin_meta"] == body["set_fields"]
    [update] = cts.updates_for("job1")
    assert (update.set_fields, update.unset_keys) == (body["set_fields"], body["unset_keys"])


def test_malformed_meta_update_is_400(cts):
    response = requests.put(cts.url + "/admin/jobs/job1/meta", json={"set_fields": [1]},
                            headers=_auth(cts), timeout=5)
    assert response.status_code == 400
    assert cts.updates_for("job1") == []


def test_outage_answers_with_the_given_status(cts):
    cts.outage(503)
    response = requests.get(cts.url + "/admin/jobs/job1", headers=_auth(cts), timeout=5)
    assert response.status_code == 503
    cts.outage(None)
    assert requests.get(cts.url + "/admin/jobs/job1", headers=_auth(cts), timeout=5).ok
