"""The Kubernetes launcher against a real API server (etcd + kube-apiserver, RBAC on).

No controller manager, scheduler or kubelet runs here: the tests play their part through
the API, as the admin. :class:`Cluster` creates a Job's pod from the Job's own template
(as the Job controller does), sets the pod's status (as the kubelet does) and the Job's
status (conditions, counters, times, as the Job controller does); the server validates
every one of those writes, so the launcher reads objects shaped as a cluster stores them.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from dispatcher.kubernetes import (
    APP_SELECTOR,
    LABEL_JOB_ID,
    KubernetesLauncher,
    KubernetesSettings,
    job_name,
)
from dispatcher.launchers import LaunchError, LaunchRequest, RunnerExit
from dispatcher.retry import Verdict, verdict
from stack.kube import KubeApiServer

NAMESPACE = "csep-launcher"
IMAGE = "registry.example/cdm-spark-events-runner@sha256:" + "ab" * 32


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def settings(**overrides: Any) -> KubernetesSettings:
    """What an operator configures (deploy/kubernetes), listing on every poll."""
    return KubernetesSettings(**{
        "image": IMAGE, "namespace": NAMESPACE,
        "credentials_secret": "csep-runner-credentials", "config_map": "csep-runner-settings",
        "env": {"CSEP_SPARK_MASTER": "sc://csep-spark-connect:15002"},
        "service_account": "csep-runner", "memory": "6Gi", "poll_interval_seconds": 0.0,
        **overrides})


def request(job_id: str, attempt: int = 1, **fields: Any) -> LaunchRequest:
    return LaunchRequest(**{
        "spec_uri": f"s3://cdm-specs/specs/{job_id}/complete-0f6f/spec.yaml",
        "job_id": job_id, "importer": "checkm2", "attempt": attempt,
        "result_name": f"result-a{attempt}.json", "timeout_seconds": 1800.5,
        "executor_cores": 2, **fields})


class Cluster:
    """The admin's view of one namespace, playing the Job controller and the kubelet."""

    def __init__(self, server: KubeApiServer, namespace: str = NAMESPACE) -> None:
        self.api_client = server.api_client()
        self.core = k8s.CoreV1Api(self.api_client)
        self.batch = k8s.BatchV1Api(self.api_client)
        self.namespace = namespace

    def wire(self, model: object) -> dict[str, Any]:
        return self.api_client.sanitize_for_serialization(model)

    def job(self, name: str) -> k8s.V1Job | None:
        try:
            return self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def start(self, name: str) -> str:
        """The Job controller's first sync: the Job's start time and its one pod, made
        from the Job's template and owned by the Job; returns the pod's name."""
        job = self.batch.read_namespaced_job(name, self.namespace)
        self.set_job_status(name, {"startTime": now(), "active": 1, "ready": 0,
                                   "terminating": 0, "uncountedTerminatedPods": {}})
        template = self.wire(job.spec.template)
        uid = job.metadata.uid
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": f"{name}-{secrets.token_hex(3)[:5]}",
                "labels": {**template["metadata"]["labels"], "job-name": name,
                           "batch.kubernetes.io/job-name": name, "controller-uid": uid,
                           "batch.kubernetes.io/controller-uid": uid},
                "annotations": template["metadata"].get("annotations", {}),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                     "uid": uid, "controller": True,
                                     "blockOwnerDeletion": True}],
                "finalizers": ["batch.kubernetes.io/job-tracking"],
            },
            "spec": template["spec"],
        }
        return self.core.create_namespaced_pod(self.namespace, pod).metadata.name

    def set_pod(self, pod: str, phase: str, state: dict[str, Any] | None,
                conditions: list[dict[str, str]] | None = None) -> None:
        """The kubelet's report: the pod's phase and its runner container's state (None:
        not on a node yet), or the scheduler's ``conditions``."""
        body = self.wire(self.core.read_namespaced_pod(pod, self.namespace))
        body["status"] = {"phase": phase, "conditions": conditions or []}
        if state is not None:
            body["status"].update({"startTime": now(), "containerStatuses": [{
                "name": "runner", "image": IMAGE, "imageID": "", "ready": False,
                "restartCount": 0, "started": phase == "Running", "state": state}]})
        self.core.replace_namespaced_pod_status(pod, self.namespace, body)

    def set_job_status(self, name: str, status: dict[str, Any]) -> None:
        body = self.wire(self.batch.read_namespaced_job(name, self.namespace))
        body["status"] = {**(body.get("status") or {}), **status}
        self.batch.replace_namespaced_job_status(name, self.namespace, body)

    def finish(self, name: str, pod: str | None, *, succeeded: bool,
               reason: str = "BackoffLimitExceeded",
               message: str = "Job has reached the specified backoff limit") -> None:
        """The Job controller's last sync: the pod counted (its tracking finalizer
        removed) and the Job's terminal conditions, in the order the server requires."""
        if pod is not None:
            self.core.patch_namespaced_pod(pod, self.namespace,
                                           [{"op": "remove", "path": "/metadata/finalizers"}])
        stamp = now()

        def condition(kind: str, why: str, text: str = "") -> dict[str, str]:
            return {"type": kind, "status": "True", "reason": why, "message": text,
                    "lastProbeTime": stamp, "lastTransitionTime": stamp}

        if succeeded:
            interim = condition("SuccessCriteriaMet", "CompletionsReached")
            final = condition("Complete", "CompletionsReached")
            counters = {"succeeded": 1, "completionTime": stamp}
        else:
            interim = condition("FailureTarget", reason, message)
            final = condition("Failed", reason, message)
            counters = {"failed": 1}
        self.set_job_status(name, {"active": 0, "ready": 0, "conditions": [interim]})
        self.set_job_status(name, {**counters, "conditions": [interim, final]})


def terminated(exit_code: int, reason: str) -> dict[str, Any]:
    stamp = now()
    return {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": stamp,
                           "finishedAt": stamp}}


class Clock:
    """Time that moves only when the test says so (the launcher paces its listings)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}


def poll_until_exit(handle: Any, polls: int = 5) -> RunnerExit | None:
    for _ in range(polls):
        ended = handle.poll()
        if ended is not None:
            return ended
    return None


@pytest.fixture(scope="module")
def cluster(kube_api: KubeApiServer) -> Cluster:
    """The launcher's namespace with the service accounts its pods name (without a
    controller manager nobody makes ``default``)."""
    cluster = Cluster(kube_api)
    cluster.core.create_namespace({"metadata": {"name": NAMESPACE}})
    for account in ("default", "csep-runner"):
        cluster.core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": account}})
    return cluster


@pytest.fixture
def launcher(kube_api: KubeApiServer, cluster: Cluster) -> KubernetesLauncher:
    client = kube_api.api_client()
    return KubernetesLauncher(settings(), k8s.BatchV1Api(client), k8s.CoreV1Api(client))


def test_every_manifest_the_launcher_builds_is_accepted(launcher, cluster):
    """Long ids and importer names, odd characters, attempts, no timeout, many cores:
    the server validates names, labels, resources and the pod template of each."""
    cases = [
        request("job-7f3a"),
        request("Job_With.Odd~Chars/and-a-very-long-identifier-" + "x" * 80, attempt=12,
                importer="a.very_long-importer.name." + "y" * 70),
        request("j", attempt=3, timeout_seconds=None, executor_cores=16, result_name=None),
        request("-leading-and-trailing-", timeout_seconds=0.2),
    ]
    for case in cases:
        handle = launcher.launch(case)
        stored = cluster.job(handle.name)
        assert stored is not None, case
        assert stored.metadata.name == job_name(launcher.settings, case)
        assert stored.metadata.annotations["cdm-spark-events.kbase.us/job-id"] == case.job_id
        container = stored.spec.template.spec.containers[0]
        assert container.args == case.runner_args
        assert container.resources.limits == {"cpu": str(case.executor_cores), "memory": "6Gi"}
        assert stored.spec.backoff_limit == 0
        assert stored.spec.ttl_seconds_after_finished == 3600
        # The pod the Job controller would make from the template is accepted too.
        cluster.start(handle.name)
        assert handle.poll() is None
        handle.kill()
        assert cluster.job(handle.name) is None


@pytest.mark.parametrize("case", ["succeeded", "exit-65", "oom-killed", "deadline",
                                  "image-pull-backoff"])
def test_how_a_job_ends_is_what_the_launcher_reports(launcher, cluster, case):
    handle = launcher.launch(request(f"end-{case}"))
    assert handle.poll() is None, "a Job without a pod yet is running"
    pod = cluster.start(handle.name)
    assert handle.poll() is None, "a pending pod is running"

    if case == "succeeded":
        cluster.set_pod(pod, "Running", RUNNING)
        assert handle.poll() is None
        cluster.set_pod(pod, "Succeeded", terminated(0, "Completed"))
        cluster.finish(handle.name, pod, succeeded=True)
        ended = poll_until_exit(handle)
        assert ended is not None and ended.exit_code == 0 and not ended.timed_out
        assert verdict(ended) is Verdict.DONE
    elif case == "exit-65":
        cluster.set_pod(pod, "Running", RUNNING)
        cluster.set_pod(pod, "Failed", terminated(65, "Error"))
        cluster.finish(handle.name, pod, succeeded=False)
        ended = poll_until_exit(handle)
        assert ended is not None and ended.exit_code == 65 and ended.infrastructure is None
        assert verdict(ended) is Verdict.FATAL
    elif case == "oom-killed":
        cluster.set_pod(pod, "Running", RUNNING)
        cluster.set_pod(pod, "Failed", terminated(137, "OOMKilled"))
        cluster.finish(handle.name, pod, succeeded=False)
        ended = poll_until_exit(handle)
        assert ended is not None and ended.exit_code is None and ended.signal == 9
        assert "[OOMKilled]" in ended.stderr_tail
        # The log was read (empty: without a node the server has no kubelet to ask).
        assert "runner log unavailable" not in ended.stderr_tail
        assert verdict(ended) is Verdict.RETRY
    elif case == "deadline":
        cluster.set_pod(pod, "Running", RUNNING)
        cluster.finish(handle.name, pod, succeeded=False, reason="DeadlineExceeded",
                       message="Job was active longer than specified deadline")
        ended = poll_until_exit(handle)
        assert ended is not None and ended.timed_out and ended.exit_code is None
        assert "Job was active longer than specified deadline" in ended.stderr_tail
        assert verdict(ended) is Verdict.RETRY
    else:
        cluster.set_pod(pod, "Pending", {"waiting": {
            "reason": "ImagePullBackOff",
            "message": f'Back-off pulling image "{IMAGE}"'}})
        ended = poll_until_exit(handle)
        assert ended is not None and ended.infrastructure == "kubernetes"
        assert "ImagePullBackOff" in ended.stderr_tail and IMAGE in ended.stderr_tail
        # The Job would wait for its deadline: the launcher deleted it.
        assert cluster.job(handle.name) is None
    assert handle.poll() == ended, "the end, once seen, stays"


def test_a_pod_unschedulable_past_the_pending_limit_frees_its_slot(kube_api, cluster):
    clock = Clock()
    client = kube_api.api_client()
    launcher = KubernetesLauncher(settings(pending_limit_seconds=300),
                                  k8s.BatchV1Api(client), k8s.CoreV1Api(client), clock=clock)
    handle = launcher.launch(request("unschedulable", executor_cores=64))
    pod = cluster.start(handle.name)
    cluster.set_pod(pod, "Pending", None, conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient cpu.",
        "lastTransitionTime": now()}])
    assert handle.poll() is None, "a cluster may still add a node"
    clock.now += 299
    assert handle.poll() is None
    clock.now += 2
    ended = handle.poll()
    assert ended is not None and ended.infrastructure == "kubernetes"
    assert "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu." in ended.stderr_tail
    assert cluster.job(handle.name) is None


def test_a_restarted_launcher_adopts_its_predecessors_job(kube_api, cluster, launcher):
    attempt = request("adopted")
    first = launcher.launch(attempt)
    pod = cluster.start(first.name)

    client = kube_api.api_client()
    successor = KubernetesLauncher(settings(), k8s.BatchV1Api(client), k8s.CoreV1Api(client))
    second = successor.launch(attempt)  # 409 Conflict: adopted
    assert second.name == first.name
    jobs = cluster.batch.list_namespaced_job(
        NAMESPACE, label_selector=f"{LABEL_JOB_ID}=adopted").items
    assert [job.metadata.name for job in jobs] == [first.name]

    cluster.set_pod(pod, "Succeeded", terminated(0, "Completed"))
    cluster.finish(first.name, pod, succeeded=True)
    ended = poll_until_exit(second)
    assert ended is not None and ended.exit_code == 0


def test_a_job_still_being_deleted_is_not_adopted(launcher, cluster):
    attempt = request("being-deleted")
    handle = launcher.launch(attempt)
    # Foreground deletion waits for a garbage collector (none runs): the Job stays, with
    # a deletion timestamp, as it does in a cluster while its pods go.
    cluster.batch.delete_namespaced_job(handle.name, NAMESPACE,
                                        propagation_policy="Foreground")
    assert cluster.job(handle.name).metadata.deletion_timestamp is not None
    with pytest.raises(LaunchError, match="still being deleted"):
        launcher.launch(attempt)
    cluster.batch.patch_namespaced_job(handle.name, NAMESPACE,
                                       [{"op": "remove", "path": "/metadata/finalizers"}])
    assert cluster.job(handle.name) is None
    assert launcher.launch(attempt).name == handle.name


def test_a_killed_job_is_deleted_for_the_garbage_collector_to_take_its_pods(launcher, cluster):
    handle = launcher.launch(request("killed"))
    pod = cluster.start(handle.name)
    cluster.set_pod(pod, "Running", RUNNING)
    handle.kill()
    assert cluster.job(handle.name) is None
    # The pod names its Job as owner: in a cluster the garbage collector deletes it.
    owners = cluster.core.read_namespaced_pod(pod, NAMESPACE).metadata.owner_references
    assert [(o.kind, o.name, o.controller) for o in owners] == [("Job", handle.name, True)]
    ended = handle.poll()
    assert ended is not None and ended.signal == 9


def test_an_api_server_outage_is_an_infrastructure_failure_and_loses_nothing(
        kube_api, cluster, launcher):
    before = launcher.launch(request("outage-running"))
    pod = cluster.start(before.name)
    assert before.poll() is None

    kube_api.stop_apiserver()
    try:
        with pytest.raises(LaunchError, match="unreachable"):
            launcher.launch(request("outage-launched-during"))
        # No news is not an end: the runner may well go on.
        assert before.poll() is None
        assert before.poll() is None
    finally:
        kube_api.start_apiserver()

    # etcd kept everything: the Job launched before is read again, and its end seen.
    cluster.set_pod(pod, "Succeeded", terminated(0, "Completed"))
    cluster.finish(before.name, pod, succeeded=True)
    ended = poll_until_exit(before)
    assert ended is not None and ended.exit_code == 0
    # The launch refused during the outage can be made again (the attempt was not spent).
    again = launcher.launch(request("outage-launched-during"))
    assert cluster.job(again.name) is not None


def list_calls(kube_api: KubeApiServer, resource: str) -> int:
    """LIST requests the API server has served for ``resource`` (its own metrics)."""
    client = kube_api.api_client()
    text = client.call_api("/metrics", "GET", auth_settings=[], response_type="str",
                           _return_http_data_only=True, _preload_content=False).data.decode()
    total = 0
    pattern = re.compile(r'^apiserver_request_total\{(.*)\} (\d+)$')
    for line in text.splitlines():
        match = pattern.match(line)
        if match and f'resource="{resource}"' in match[1] and 'verb="LIST"' in match[1]:
            total += int(match[2])
    return total


def test_fifty_jobs_in_flight_are_polled_with_one_listing_per_interval(kube_api, cluster):
    clock = Clock()
    client = kube_api.api_client()
    launcher = KubernetesLauncher(settings(poll_interval_seconds=10.0),
                                  k8s.BatchV1Api(client), k8s.CoreV1Api(client), clock=clock)
    handles = [launcher.launch(request(f"fleet-{n:02d}")) for n in range(50)]
    pods = {handle.name: cluster.start(handle.name) for handle in handles}
    jobs_before, pods_before = list_calls(kube_api, "jobs"), list_calls(kube_api, "pods")

    clock.now += 1
    for _ in range(3):
        assert all(handle.poll() is None for handle in handles)
    clock.now += 5
    assert all(handle.poll() is None for handle in handles)
    assert list_calls(kube_api, "jobs") - jobs_before == 1
    assert list_calls(kube_api, "pods") - pods_before == 1

    for n, handle in enumerate(handles):
        code = 0 if n % 2 == 0 else 65
        cluster.set_pod(pods[handle.name], "Succeeded" if code == 0 else "Failed",
                        terminated(code, "Completed" if code == 0 else "Error"))
        cluster.finish(handle.name, pods[handle.name], succeeded=code == 0)
    clock.now += 10
    ended = [handle.poll() for handle in handles]
    assert [e.exit_code for e in ended] == [0 if n % 2 == 0 else 65 for n in range(50)]
    assert list_calls(kube_api, "jobs") - jobs_before == 2
    assert list_calls(kube_api, "pods") - pods_before == 2
    for handle in handles:
        launcher.delete(handle.name)
    remaining = cluster.batch.list_namespaced_job(
        NAMESPACE, label_selector=f"{APP_SELECTOR},{LABEL_JOB_ID}=fleet-00").items
    assert remaining == []

