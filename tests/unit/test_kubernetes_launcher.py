"""The Kubernetes launcher against a recorded API: no cluster runs here.

The doubles stand in for ``BatchV1Api`` and ``CoreV1Api``: they record every call and
answer with real ``kubernetes.client`` model objects, shaped as a cluster reports a Job
and its pod in each situation. The manifest is checked in the JSON form the client
sends on the wire.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import attrs
import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from dispatcher.kubernetes import (
    KubernetesLauncher,
    KubernetesSettings,
    job_manifest,
    job_name,
    label_value,
)
from dispatcher.launchers import LaunchError, LaunchRequest, RunnerExit

SPEC_URI = "s3://cdm-specs/specs/job-7f3a/complete-0f6f/spec.yaml"
REQUEST = LaunchRequest(spec_uri=SPEC_URI, job_id="job-7f3a", importer="checkm2",
                        attempt=2, timeout_seconds=1800.5, executor_cores=4)
SETTINGS = KubernetesSettings(
    image="ghcr.io/kbase/cdm-spark-events-runner@sha256:" + "ab" * 32,
    namespace="cdm-events",
    credentials_secret="csep-runner-credentials",
    config_map="csep-runner-settings",
    env={"CSEP_SPARK_MASTER": "sc://spark-connect.cdm:15002"},
    service_account="csep-runner",
    ttl_seconds_after_finished=7200,
    memory="6Gi",
    request_timeout_seconds=7,
)
JOB_NAME = job_name(SETTINGS, REQUEST)
TIMEOUT = {"_request_timeout": 7}
SELECTOR = "app.kubernetes.io/name=cdm-spark-events-runner"
RUNNER_LOG = "INFO imported 12 rows into u_someuser__checkm2.quality\n"

EXPECTED_LABELS = {
    "app.kubernetes.io/name": "cdm-spark-events-runner",
    "app.kubernetes.io/component": "runner",
    "cdm-spark-events.kbase.us/job-id": "job-7f3a",
    "cdm-spark-events.kbase.us/attempt": "2",
    "cdm-spark-events.kbase.us/importer": "checkm2",
}
EXPECTED_ANNOTATIONS = {
    "cdm-spark-events.kbase.us/spec-uri": SPEC_URI,
    "cdm-spark-events.kbase.us/job-id": "job-7f3a",
}
EXPECTED_MANIFEST = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": JOB_NAME,
        "namespace": "cdm-events",
        "labels": EXPECTED_LABELS,
        "annotations": EXPECTED_ANNOTATIONS,
    },
    "spec": {
        "backoffLimit": 0,
        "activeDeadlineSeconds": 1801,
        "ttlSecondsAfterFinished": 7200,
        "template": {
            "metadata": {"labels": EXPECTED_LABELS, "annotations": EXPECTED_ANNOTATIONS},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": "csep-runner",
                "automountServiceAccountToken": True,
                "securityContext": {"runAsNonRoot": True},
                "containers": [{
                    "name": "runner",
                    "image": SETTINGS.image,
                    "imagePullPolicy": "IfNotPresent",
                    "args": [SPEC_URI],
                    "env": [{"name": "CSEP_SPARK_MASTER",
                             "value": "sc://spark-connect.cdm:15002"}],
                    "envFrom": [
                        {"configMapRef": {"name": "csep-runner-settings"}},
                        {"secretRef": {"name": "csep-runner-credentials"}},
                    ],
                    "resources": {"requests": {"cpu": "4", "memory": "6Gi"},
                                  "limits": {"cpu": "4", "memory": "6Gi"}},
                    "securityContext": {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}},
                }],
            },
        },
    },
}


def wire(model: object) -> dict:
    """What the client sends for ``model``: its JSON body."""
    return k8s.ApiClient().sanitize_for_serialization(model)


class RecordingBatchApi:
    """Records Job calls; answers each ``list_namespaced_job`` with the next of
    ``listings`` (a Job, None for no Job, or an exception the client raises)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.listings: list[k8s.V1Job | None | Exception] = []
        self.create_error: Exception | None = None
        self.existing: k8s.V1Job | None = None

    def create_namespaced_job(self, namespace: str, body: k8s.V1Job, **kwargs) -> k8s.V1Job:
        self.calls.append(("create_namespaced_job", (namespace, wire(body), kwargs)))
        if self.create_error:
            raise self.create_error
        return k8s.V1Job(api_version="batch/v1", kind="Job", metadata=body.metadata,
                         spec=body.spec, status=k8s.V1JobStatus())

    def read_namespaced_job(self, name: str, namespace: str, **kwargs) -> k8s.V1Job:
        self.calls.append(("read_namespaced_job", (name, namespace, kwargs)))
        return self.existing

    def list_namespaced_job(self, namespace: str, label_selector: str, **kwargs) -> k8s.V1JobList:
        self.calls.append(("list_namespaced_job", (namespace, label_selector, kwargs)))
        answer = self.listings.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return k8s.V1JobList(items=answer if isinstance(answer, list) else
                             [answer] if answer is not None else [])

    def delete_namespaced_job(self, name: str, namespace: str, **kwargs: object) -> None:
        self.calls.append(("delete_namespaced_job", (name, namespace, kwargs)))


class RecordingCoreApi:
    """Answers pod listings with ``pods`` and pod logs with ``log``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.pods: list[k8s.V1Pod] = []
        self.log = RUNNER_LOG

    def list_namespaced_pod(self, namespace: str, label_selector: str, **kwargs) -> k8s.V1PodList:
        self.calls.append(("list_namespaced_pod", (namespace, label_selector, kwargs)))
        return k8s.V1PodList(items=list(self.pods))

    def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: object) -> str:
        self.calls.append(("read_namespaced_pod_log", (name, namespace, kwargs)))
        return self.log


class Clock:
    """Time that moves only when a test says so (the launcher paces its listings)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


POD_NAME = JOB_NAME + "-q9r8s"
T0 = datetime(2026, 11, 20, 10, 15, tzinfo=timezone.utc)


def job_status(*, active: int = 0, succeeded: int = 0, failed: int = 0,
               condition: tuple[str, str, str] | None = None,
               name: str = JOB_NAME) -> k8s.V1Job:
    conditions = None
    if condition:
        kind, reason, message = condition
        conditions = [k8s.V1JobCondition(type=kind, status="True", reason=reason,
                                         message=message, last_transition_time=T0)]
    return k8s.V1Job(metadata=k8s.V1ObjectMeta(name=name, namespace="cdm-events"),
                     status=k8s.V1JobStatus(active=active or None, succeeded=succeeded or None,
                                            failed=failed or None, conditions=conditions))


def pod(state: k8s.V1ContainerState, phase: str) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=POD_NAME, namespace="cdm-events",
                                  creation_timestamp=T0, labels={"job-name": JOB_NAME}),
        status=k8s.V1PodStatus(phase=phase, container_statuses=[k8s.V1ContainerStatus(
            name="runner", image=SETTINGS.image, image_id="", ready=False, restart_count=0,
            state=state)]))


def terminated(exit_code: int, reason: str) -> k8s.V1ContainerState:
    return k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(
        exit_code=exit_code, reason=reason, started_at=T0, finished_at=T0))


def waiting(reason: str, message: str) -> k8s.V1ContainerState:
    return k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason=reason,
                                                                     message=message))


RUNNING = k8s.V1ContainerState(running=k8s.V1ContainerStateRunning(started_at=T0))


@pytest.fixture
def apis() -> tuple[RecordingBatchApi, RecordingCoreApi]:
    return RecordingBatchApi(), RecordingCoreApi()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def launcher_of(apis, clock=None) -> KubernetesLauncher:
    batch, core = apis
    return KubernetesLauncher(SETTINGS, batch=batch, core=core, clock=clock or Clock())


def launched(apis, clock=None):
    return launcher_of(apis, clock).launch(REQUEST)


def later(clock: Clock, seconds: float = 10.0) -> None:
    clock.now += seconds


def test_launch_submits_the_exact_job_manifest(apis):
    batch, _ = apis
    handle = launched(apis)

    assert batch.calls == [("create_namespaced_job", ("cdm-events", EXPECTED_MANIFEST, TIMEOUT))]
    assert handle.name == JOB_NAME
    assert handle.namespace == "cdm-events"


def test_manifest_without_optional_settings_has_no_token_and_no_deadline():
    settings = KubernetesSettings(image="runner:1", credentials_secret="creds")
    body = wire(job_manifest(settings, LaunchRequest(SPEC_URI, "j", "imp", 1)))

    assert "activeDeadlineSeconds" not in body["spec"]
    pod_spec = body["spec"]["template"]["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod_spec
    (container,) = pod_spec["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert "env" not in container
    assert container["resources"]["limits"]["cpu"] == "1"


def test_credentials_appear_only_as_the_secret_name(apis):
    batch, _ = apis
    launched(apis)
    sent = json.dumps(batch.calls)
    assert "csep-runner-credentials" in sent
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "CSEP_METASTORE_PASSWORD"):
        assert name not in sent

    with pytest.raises(ValueError, match="AWS_SECRET_ACCESS_KEY, CSEP_METASTORE_PASSWORD"):
        KubernetesSettings(image="runner:1", env={"CSEP_METASTORE_PASSWORD": "x",
                                                  "AWS_SECRET_ACCESS_KEY": "y",
                                                  "CSEP_S3_REGION": "us-east-1"})


def test_job_ids_become_valid_label_values_and_names():
    odd = "Job/ID with spaces & a very long tail " + "x" * 80 + "__"
    body = wire(job_manifest(SETTINGS, LaunchRequest(SPEC_URI, odd, "Check M2!", 1)))
    labels = body["metadata"]["labels"]

    assert labels["cdm-spark-events.kbase.us/job-id"] == label_value(odd)
    assert len(labels["cdm-spark-events.kbase.us/job-id"]) <= 63
    assert labels["cdm-spark-events.kbase.us/job-id"].startswith("Job-ID-with-spaces---a-very")
    assert labels["cdm-spark-events.kbase.us/job-id"][-1].isalnum()
    assert labels["cdm-spark-events.kbase.us/importer"] == "Check-M2"
    # The whole id is kept where any text is allowed.
    assert body["metadata"]["annotations"]["cdm-spark-events.kbase.us/job-id"] == odd
    name = body["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
    assert name.startswith("csep-runner-job-id-with-spaces-a-ver-") and name.endswith("-a1")


def test_refused_job_is_a_launch_error(apis):
    batch, _ = apis
    batch.create_error = ApiException(status=403, reason="Forbidden")
    batch.create_error.body = '{"message": "jobs.batch is forbidden"}'

    with pytest.raises(LaunchError, match=r"job-7f3a attempt 2\): HTTP 403 Forbidden: .*forbidden"):
        launched(apis)


def test_job_names_follow_spec_and_attempt():
    assert job_name(SETTINGS, attrs.evolve(REQUEST)) == JOB_NAME
    assert JOB_NAME.startswith("csep-runner-job-7f3a-") and JOB_NAME.endswith("-a2")
    assert job_name(SETTINGS, attrs.evolve(REQUEST, attempt=3)) != JOB_NAME
    assert job_name(SETTINGS, attrs.evolve(REQUEST, spec_uri=SPEC_URI + "x")) != JOB_NAME


def test_a_restarted_dispatcher_adopts_the_job_of_the_same_attempt(apis, clock):
    batch, core = apis
    batch.create_error = ApiException(status=409, reason="Conflict")
    batch.existing = job_status(active=1)
    handle = launched(apis, clock)

    assert [c[0] for c in batch.calls] == ["create_namespaced_job", "read_namespaced_job"]
    assert batch.calls[1][1] == (JOB_NAME, "cdm-events", TIMEOUT)
    # It is followed like one this dispatcher created.
    later(clock)
    batch.listings = [job_status(succeeded=1)]
    core.pods = [pod(terminated(0, "Completed"), "Succeeded")]
    assert handle.poll() == RunnerExit(exit_code=0, stderr_tail=RUNNER_LOG)


def test_a_job_still_being_deleted_is_not_adopted(apis):
    batch, _ = apis
    batch.create_error = ApiException(status=409, reason="Conflict")
    batch.existing = job_status(active=1)
    batch.existing.metadata.deletion_timestamp = T0
    with pytest.raises(LaunchError, match="still being deleted"):
        launched(apis)


@pytest.mark.parametrize("error", [
    urllib3.exceptions.MaxRetryError(None, "/apis/batch/v1/namespaces/cdm-events/jobs",
                                     reason=ConnectionRefusedError(111, "Connection refused")),
    urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
    urllib3.exceptions.ReadTimeoutError(None, "/apis/batch/v1", "Read timed out. (read timeout=7)"),
    ApiException(status=500, reason="Internal Server Error"),
    ApiException(status=401, reason="Unauthorized"),
    ApiException(status=403, reason="Forbidden"),
], ids=["max-retry", "protocol", "read-timeout", "500", "401", "403"])
def test_api_failures_at_launch_are_launch_errors(apis, error):
    batch, _ = apis
    batch.create_error = error
    with pytest.raises(LaunchError, match="job-7f3a attempt 2"):
        launched(apis)


@pytest.mark.parametrize("error", [
    urllib3.exceptions.MaxRetryError(None, "/apis/batch/v1/namespaces/cdm-events/jobs",
                                     reason=ConnectionRefusedError(111, "Connection refused")),
    urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
    urllib3.exceptions.ReadTimeoutError(None, "/apis/batch/v1", "Read timed out. (read timeout=7)"),
    ApiException(status=503, reason="Service Unavailable"),
    ApiException(status=401, reason="Unauthorized"),
], ids=["max-retry", "protocol", "read-timeout", "503", "401"])
def test_a_poll_that_cannot_reach_the_api_returns_none_and_tries_again(apis, clock, error):
    batch, core = apis
    handle = launched(apis, clock)
    later(clock)
    batch.listings = [error, job_status(succeeded=1)]
    core.pods = [pod(terminated(0, "Completed"), "Succeeded")]

    assert handle.poll() is None
    later(clock)
    assert handle.poll() == RunnerExit(exit_code=0, stderr_tail=RUNNER_LOG)


def test_polling_is_paced_and_lists_all_jobs_at_once(apis, clock):
    batch, core = apis
    launcher = launcher_of(apis, clock)
    first = launcher.launch(REQUEST)
    second = launcher.launch(attrs.evolve(REQUEST, attempt=3))
    later(clock)
    batch.listings = [[job_status(active=1), job_status(active=1, name=second.name)]]
    core.pods = [pod(RUNNING, "Running")]

    for _ in range(5):  # many loop turns within one interval
        assert first.poll() is None and second.poll() is None
    lists = [c for c in batch.calls + core.calls if c[0].startswith("list_")]
    assert lists == [("list_namespaced_job", ("cdm-events", SELECTOR, TIMEOUT)),
                     ("list_namespaced_pod", ("cdm-events", SELECTOR, TIMEOUT))]
    assert not [c for c in batch.calls if c[0] == "read_namespaced_job_status"]

    later(clock, 9.9)
    first.poll()
    assert len([c for c in batch.calls if c[0] == "list_namespaced_job"]) == 1
    later(clock, 0.2)
    batch.listings = [[job_status(active=1), job_status(active=1, name=second.name)]]
    first.poll()
    assert len([c for c in batch.calls if c[0] == "list_namespaced_job"]) == 2


def test_every_api_call_has_a_request_timeout(apis, clock):
    batch, core = apis
    handle = launched(apis, clock)
    later(clock)
    batch.listings = [job_status(succeeded=1)]
    core.pods = [pod(terminated(0, "Completed"), "Succeeded")]
    handle.poll()
    handle.kill()
    for name, args in batch.calls + core.calls:
        assert args[-1].get("_request_timeout") == 7, name


@pytest.mark.parametrize("code", [0, 64, 65, 75, 70, 1])
def test_container_exit_code_is_the_runner_exit_code(apis, code):
    batch, core = apis
    handle = launched(apis)
    ended = job_status(succeeded=1) if code == 0 else job_status(
        failed=1, condition=("Failed", "BackoffLimitExceeded", "Job has reached the "
                                                               "specified backoff limit"))
    batch.listings = [ended]
    core.pods = [pod(terminated(code, "Completed" if code == 0 else "Error"),
                     "Succeeded" if code == 0 else "Failed")]

    assert handle.poll() == RunnerExit(exit_code=code, stderr_tail=RUNNER_LOG)
    assert ("list_namespaced_pod", ("cdm-events", SELECTOR, TIMEOUT)) in core.calls
    assert ("read_namespaced_pod_log", (POD_NAME, "cdm-events", {
        "container": "runner", "tail_lines": 40, **TIMEOUT})) in core.calls
    # The end is remembered: no more API calls.
    calls = len(batch.calls) + len(core.calls)
    assert handle.poll() == RunnerExit(exit_code=code, stderr_tail=RUNNER_LOG)
    assert len(batch.calls) + len(core.calls) == calls


def test_oom_kill_137_is_a_signal_with_the_reason(apis):
    batch, core = apis
    handle = launched(apis)
    batch.listings = [job_status(failed=1, condition=("Failed", "BackoffLimitExceeded", ""))]
    core.pods = [pod(terminated(137, "OOMKilled"), "Failed")]

    ended = handle.poll()
    assert ended.exit_code is None
    assert ended.signal == 9
    assert not ended.timed_out
    assert ended.stderr_tail.startswith(RUNNER_LOG.strip())
    assert ended.stderr_tail.endswith("[OOMKilled]")


def test_running_or_pulling_job_is_not_finished(apis, clock):
    batch, core = apis
    handle = launched(apis, clock)
    batch.listings = [job_status(active=1), job_status(active=1)]
    core.pods = [pod(RUNNING, "Running")]
    later(clock)
    assert handle.poll() is None

    core.pods = [pod(waiting("ErrImagePull", "rpc error: not found"), "Pending")]
    later(clock)
    assert handle.poll() is None
    assert not [c for c in batch.calls if c[0] == "delete_namespaced_job"]


@pytest.mark.parametrize("stuck", ["ErrImagePull", "Unschedulable"])
def test_a_pod_stuck_past_the_pending_limit_is_an_infrastructure_failure(apis, clock, stuck):
    batch, core = apis
    handle = launched(apis, clock)
    if stuck == "Unschedulable":
        stuck_pod = k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=POD_NAME, creation_timestamp=T0,
                                      labels={"job-name": JOB_NAME}),
            status=k8s.V1PodStatus(phase="Pending", conditions=[k8s.V1PodCondition(
                type="PodScheduled", status="False", reason="Unschedulable",
                message="0/3 nodes are available: 3 Insufficient cpu.")]))
    else:
        stuck_pod = pod(waiting("ErrImagePull", "rpc error: not found"), "Pending")
    core.pods = [stuck_pod]
    batch.listings = [job_status(active=1)] * 3
    later(clock)
    assert handle.poll() is None
    later(clock, 200)
    assert handle.poll() is None
    later(clock, 101)  # 301 s in that state, past pending_limit_seconds (300)
    ended = handle.poll()
    assert ended.exit_code is None and ended.infrastructure == "kubernetes"
    assert f"runner pod {POD_NAME} cannot start: {stuck}" in ended.stderr_tail
    assert batch.calls[-1] == ("delete_namespaced_job", (
        JOB_NAME, "cdm-events", {"propagation_policy": "Background", **TIMEOUT}))


def test_deadline_exceeded_is_a_timeout(apis):
    batch, core = apis
    handle = launched(apis)
    batch.listings = [job_status(failed=1, condition=(
        "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"))]
    core.pods = [pod(terminated(143, "Error"), "Failed")]

    assert handle.poll() == RunnerExit(
        exit_code=None, timed_out=True,
        stderr_tail=f"Kubernetes Job {JOB_NAME}: Job was active longer than specified deadline")


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "CreateContainerConfigError"])
def test_a_pod_that_cannot_start_deletes_the_job_without_spending_an_attempt(apis, reason):
    batch, core = apis
    handle = launched(apis)
    batch.listings = [job_status(active=1)]
    core.pods = [pod(waiting(reason, 'Back-off pulling image "runner:typo"'), "Pending")]

    ended = handle.poll()
    assert ended == RunnerExit(exit_code=None, infrastructure="kubernetes", stderr_tail=(
        f'runner pod {POD_NAME} cannot start: {reason}: '
        'Back-off pulling image "runner:typo"'))
    assert batch.calls[-1] == ("delete_namespaced_job", (
        JOB_NAME, "cdm-events", {"propagation_policy": "Background", **TIMEOUT}))


def test_vanished_job_ends_the_attempt(apis, clock):
    batch, _ = apis
    handle = launched(apis, clock)
    batch.listings = [job_status(active=1), None]
    later(clock)
    assert handle.poll() is None
    later(clock)
    ended = handle.poll()
    assert ended.exit_code is None and ended.signal is None
    assert "disappeared" in ended.stderr_tail


def test_kill_deletes_the_job(apis):
    batch, _ = apis
    handle = launched(apis)
    handle.kill()

    assert batch.calls[-1] == ("delete_namespaced_job", (
        JOB_NAME, "cdm-events", {"propagation_policy": "Background", **TIMEOUT}))
    assert handle.poll() == RunnerExit(
        exit_code=None, signal=9,
        stderr_tail=f"Kubernetes Job cdm-events/{JOB_NAME} deleted by the dispatcher")
