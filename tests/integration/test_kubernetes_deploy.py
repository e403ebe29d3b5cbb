"""deploy/kubernetes applied to a real API server, then the launcher as the dispatcher's
own ServiceAccount: what its Role grants is what the launcher does, and nothing more.

The manifests are created (not a dry run) as an operator's ``kubectl apply -k`` would,
with the two Secrets docs/deployment.md has the operator create. No controller runs (see
tests/integration/test_kubernetes.py): the Deployments make no pods, and the test plays
the Job controller for the one Job it follows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import utils as k8s_utils
from kubernetes.client.exceptions import ApiException

from dispatcher import config as dispatcher_config
from dispatcher.kubernetes import KubernetesLauncher, KubernetesSettings
from dispatcher.launchers import DockerSettings, LaunchError, LaunchRequest
from stack.kube import KubeApiServer
from stack.paths import ROOT
from tests.integration.test_kubernetes import Cluster, poll_until_exit, terminated

DEPLOY = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
NAMESPACE = KUSTOMIZATION["namespace"]


def manifests() -> list[dict[str, Any]]:
    """Every object of the kustomization, with its namespace and common labels."""
    labels = {k: v for entry in KUSTOMIZATION.get("labels", ()) for k, v in entry["pairs"].items()}
    objects = []
    for resource in KUSTOMIZATION["resources"]:
        for document in yaml.safe_load_all((DEPLOY / resource).read_text()):
            if document["kind"] != "Namespace":
                document["metadata"]["namespace"] = NAMESPACE
            document["metadata"].setdefault("labels", {}).update(labels)
            objects.append(document)
    return objects


def by_kind(kind: str, name: str) -> dict[str, Any]:
    [found] = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def deployed(kube_api: KubeApiServer) -> Cluster:
    """The kustomization created on the server, the operator's two Secrets, and the
    ``default`` ServiceAccount a controller manager would make."""
    cluster = Cluster(kube_api, NAMESPACE)
    for document in manifests():
        k8s_utils.create_from_dict(cluster.api_client, document)
    cluster.core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": "default"}})
    for name, keys in {
        "csep-dispatcher-credentials": ("CSEP_CTS_TOKEN", "AWS_ACCESS_KEY_ID",
                                        "AWS_SECRET_ACCESS_KEY"),
        "csep-runner-credentials": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                    "CSEP_METASTORE_PASSWORD"),
    }.items():
        cluster.core.create_namespaced_secret(NAMESPACE, {
            "metadata": {"name": name}, "stringData": {key: f"test-{key}" for key in keys}})
    # Another team's namespace, with a Secret the dispatcher must not read.
    cluster.core.create_namespace({"metadata": {"name": "elsewhere"}})
    cluster.core.create_namespaced_secret("elsewhere", {
        "metadata": {"name": "theirs"}, "stringData": {"password": "not-yours"}})
    return cluster


@pytest.fixture(scope="module")
def dispatcher_token(deployed: Cluster) -> str:
    """A token of the dispatcher's ServiceAccount (what its pod gets mounted)."""
    answer = deployed.core.create_namespaced_service_account_token(
        "csep-dispatcher", NAMESPACE, k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=["https://kubernetes.default.svc"],
                                        expiration_seconds=3600)))
    return answer.status.token


def dispatcher_settings(tmp_path: Path) -> dispatcher_config.Config:
    """The dispatcher's configuration from the ConfigMap, read by its own loader."""
    path = tmp_path / "dispatcher.yaml"
    path.write_text(by_kind("ConfigMap", "csep-dispatcher-config")["data"]["dispatcher.yaml"])
    return dispatcher_config.load(path, environ={})


def test_the_kustomization_names_every_manifest():
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == files


def test_the_manifests_are_created_as_written(deployed):
    apps = k8s.AppsV1Api(deployed.api_client)
    dispatcher = apps.read_namespaced_deployment("csep-dispatcher", NAMESPACE).spec.template.spec
    assert dispatcher.service_account_name == "csep-dispatcher"
    assert dispatcher.security_context.run_as_non_root
    [container] = dispatcher.containers
    assert container.security_context.read_only_root_filesystem
    assert not container.security_context.allow_privilege_escalation
    assert container.readiness_probe.http_get.path == "/health"
    assert container.liveness_probe.http_get.path == "/health"
    assert container.resources.requests and container.resources.limits
    assert [e.secret_ref.name for e in container.env_from] == ["csep-dispatcher-credentials"]
    [port] = container.ports
    assert {e.name: e.value for e in container.env}["CSEP_METRICS_PORT"] == str(port.container_port)
    connect = apps.read_namespaced_deployment("csep-spark-connect", NAMESPACE)
    service = deployed.core.read_namespaced_service("csep-spark-connect", NAMESPACE)
    assert service.spec.selector == connect.spec.selector.match_labels
    assert service.spec.ports[0].port == 15002
    budget = k8s.PolicyV1Api(deployed.api_client).read_namespaced_pod_disruption_budget(
        "csep-dispatcher", NAMESPACE)
    assert budget.spec.selector.match_labels == \
        apps.read_namespaced_deployment("csep-dispatcher", NAMESPACE).spec.selector.match_labels


def test_the_configmap_is_a_valid_dispatcher_configuration(tmp_path):
    config = dispatcher_settings(tmp_path)
    assert config.launcher.kind == "kubernetes"
    assert config.launcher.settings.namespace == NAMESPACE
    assert config.launcher.settings.credentials_secret == "csep-runner-credentials"
    assert config.launcher.settings.config_map == "csep-runner-settings"
    assert config.metrics_port == 8080


def test_the_runner_settings_are_variables_runners_read_and_hold_no_credential():
    runner_variables = set(DockerSettings().pass_env)
    settings = by_kind("ConfigMap", "csep-runner-settings")["data"]
    assert set(settings) <= runner_variables
    credentials = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CSEP_METASTORE_PASSWORD",
                   "CSEP_ICEBERG_CREDENTIAL"}
    assert not set(settings) & credentials


def test_the_dispatcher_account_runs_the_launcher(kube_api, deployed, dispatcher_token,
                                                  tmp_path):
    # A kubeconfig holding the account's token, as the mounted token would be in the pod.
    kubeconfig = kube_api.kubeconfig(tmp_path / "kubeconfig", token=dispatcher_token,
                                     namespace=NAMESPACE)

    def as_dispatcher(settings: KubernetesSettings) -> KubernetesLauncher:
        client = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        return KubernetesLauncher(settings, k8s.BatchV1Api(client), k8s.CoreV1Api(client))

    # The ConfigMap's settings, listing on every poll rather than every 10 s.
    settings = attrs.evolve(dispatcher_settings(tmp_path).launcher.settings,
                            poll_interval_seconds=0.0)
    launcher = as_dispatcher(settings)
    attempt = LaunchRequest(spec_uri="s3://cdm-specs/specs/job-rbac/spec.yaml",
                            job_id="job-rbac", importer="checkm2", attempt=1,
                            timeout_seconds=600)
    handle = launcher.launch(attempt)                        # create
    assert launcher.launch(attempt).name == handle.name      # 409, then get
    pod = deployed.start(handle.name)
    assert handle.poll() is None                             # list Jobs and pods
    assert launcher.pod(handle.name).metadata.name == pod
    deployed.set_pod(pod, "Failed", terminated(65, "Error"))
    deployed.finish(handle.name, pod, succeeded=False)
    ended = poll_until_exit(handle)
    assert ended is not None and ended.exit_code == 65
    # pods/log is granted (empty: without a node there is no kubelet to ask); a 403
    # would be in the tail as "runner log unavailable".
    assert "runner log unavailable" not in ended.stderr_tail
    handle.kill()                                            # delete
    assert deployed.job(handle.name) is None

    # The runner pods' credentials are not the dispatcher's to read.
    client = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    identity = k8s.AuthenticationV1Api(client).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert identity.status.user_info.username == \
        f"system:serviceaccount:{NAMESPACE}:csep-dispatcher"
    core, batch = k8s.CoreV1Api(client), k8s.BatchV1Api(client)
    refused = [
        lambda: core.read_namespaced_secret("csep-runner-credentials", NAMESPACE),
        lambda: core.list_namespaced_secret(NAMESPACE),
        lambda: core.read_namespaced_config_map("csep-dispatcher-config", NAMESPACE),
        lambda: core.create_namespaced_pod(NAMESPACE, {"metadata": {"name": "p"}}),
        lambda: core.delete_namespaced_pod(pod, NAMESPACE),
        lambda: batch.patch_namespaced_job(handle.name, NAMESPACE, [{"op": "test",
                                                                     "path": "/x"}]),
        lambda: core.read_namespaced_secret("theirs", "elsewhere"),
        lambda: batch.list_namespaced_job("elsewhere"),
        lambda: core.list_namespaced_pod("elsewhere"),
    ]
    for call in refused:
        with pytest.raises(ApiException) as error:
            call()
        assert error.value.status == 403, error.value

    # A launcher pointed at another namespace is refused at launch.
    elsewhere = as_dispatcher(
        KubernetesSettings(image=settings.image, namespace="elsewhere"))
    with pytest.raises(LaunchError, match="HTTP 403"):
        elsewhere.launch(attempt)
    assert elsewhere.snapshot() is None
