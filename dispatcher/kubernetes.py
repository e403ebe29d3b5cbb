"""The Kubernetes launcher: one Kubernetes Job per runner attempt.

Each attempt becomes a Job running the runner image with the spec URI as its only
argument (the image's entrypoint is ``python -m runner``). The Job never retries by
itself (``backoffLimit: 0``): retries are the dispatcher's decision, taken on the exit
code, exactly as with the subprocess and Docker launchers. The dispatcher's timeout
becomes the Job's ``activeDeadlineSeconds``, so Kubernetes enforces it even if the
dispatcher is gone.

Credentials reach the runner only through ``envFrom`` a named Secret: the manifest
carries the Secret's name, never a value. Non-secret settings (S3 endpoint, Spark
master, metastore URL, ...) come from a named ConfigMap and/or plain ``env`` entries.

How a Job ends, mapped to :class:`~dispatcher.launchers.RunnerExit`:

======================================  ==============================================
the runner container exited with 0..128  ``exit_code`` as is (0, 64, 65, 75, ...)
it exited with 128+N (137 = SIGKILL,     ``exit_code=None, signal=N``: killed, e.g.
OOMKilled)                               out of memory; the reason is in ``stderr_tail``
the Job hit activeDeadlineSeconds        ``exit_code=None, timed_out=True``
the pod cannot start (ImagePullBackOff,  the Job is deleted; ``exit_code=None`` with the
InvalidImageName, a missing Secret...)   reason: an infrastructure failure, retried
the Job vanished or was deleted          ``exit_code=None``
======================================  ==============================================

Requires the ``kubernetes`` extra (``pip install 'cdm-spark-events[kubernetes]'``).
"""

from __future__ import annotations

import logging
import math
import re
import signal

import attrs
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from common.credentials import is_credential_name
from dispatcher.launchers import LaunchError, LaunchRequest, RunnerExit

log = logging.getLogger(__name__)

APP_NAME = "cdm-spark-events-runner"
LABEL_JOB_ID = "cdm-spark-events.kbase.us/job-id"
LABEL_ATTEMPT = "cdm-spark-events.kbase.us/attempt"
LABEL_IMPORTER = "cdm-spark-events.kbase.us/importer"
ANNOTATION_SPEC_URI = "cdm-spark-events.kbase.us/spec-uri"
ANNOTATION_JOB_ID = "cdm-spark-events.kbase.us/job-id"
CONTAINER_NAME = "runner"

# Waiting reasons after which the pod will not start without someone changing something
# (the image, the Secret, the ConfigMap); ErrImagePull is not among them because the
# kubelet retries it and reports ImagePullBackOff once it gives up for a while.
_STUCK_REASONS = frozenset({
    "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError",
})
_LOG_TAIL_LINES = 40




def _no_credentials(instance: object, attribute: attrs.Attribute, env: dict[str, str]) -> None:
    # The manifest is visible to anyone who can read Jobs; credentials belong in the Secret.
    leaked = sorted(name for name in env if is_credential_name(name))
    if leaked:
        raise ValueError(f"kubernetes.env must not carry credentials ({', '.join(leaked)}): "
                         "put them in the Secret named by credentials_secret")


@attrs.frozen
class KubernetesSettings:
    """Where and how runner Jobs are created.

    ``image``                       the runner image (pin a digest in production)
    ``namespace``                   namespace of the Jobs (and of the Secret/ConfigMap)
    ``credentials_secret``          name of a Secret whose keys become the runner's
                                    environment (``AWS_ACCESS_KEY_ID``,
                                    ``AWS_SECRET_ACCESS_KEY``, ``CSEP_METASTORE_PASSWORD``)
    ``config_map``                  name of a ConfigMap with the non-secret settings
                                    (``CSEP_S3_ENDPOINT_URL``, ``CSEP_SPARK_MASTER``, ...)
    ``env``                         further non-secret variables, set on the container
    ``service_account``             the pod's service account; none means the pod gets
                                    no API token (a ``k8s://`` Spark master needs one)
    ``ttl_seconds_after_finished``  Kubernetes deletes finished Jobs after this long;
                                    keep it well above the dispatcher's poll interval
    ``memory``                      memory request and limit of the runner container
    ``image_pull_policy``           ``IfNotPresent``, ``Always`` or ``Never``
    ``name_prefix``                 start of each Job's generated name
    """

    image: str
    namespace: str = "default"
    credentials_secret: str | None = None
    config_map: str | None = None
    env: dict[str, str] = attrs.field(factory=dict, validator=_no_credentials)
    service_account: str | None = None
    ttl_seconds_after_finished: int = 3600
    memory: str = "4Gi"
    image_pull_policy: str = attrs.field(
        default="IfNotPresent",
        validator=attrs.validators.in_(("IfNotPresent", "Always", "Never")))
    name_prefix: str = "csep-runner"


def label_value(text: str) -> str:
    """``text`` made a valid label value: at most 63 of ``[A-Za-z0-9-_.]``, alphanumeric
    at both ends (the full value goes into an annotation when it matters)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def _name_part(text: str, length: int) -> str:
    """A lowercase DNS-label fragment of ``text`` for generated Job names."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length].strip("-") or "x"


def job_manifest(settings: KubernetesSettings, request: LaunchRequest) -> k8s.V1Job:
    """The Job that runs ``request`` (pure: no API call)."""
    labels = {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/component": "runner",
        LABEL_JOB_ID: label_value(request.job_id),
        LABEL_ATTEMPT: str(request.attempt),
        LABEL_IMPORTER: label_value(request.importer),
    }
    annotations = {ANNOTATION_SPEC_URI: request.spec_uri, ANNOTATION_JOB_ID: request.job_id}
    env_from = []
    if settings.config_map:
        env_from.append(k8s.V1EnvFromSource(
            config_map_ref=k8s.V1ConfigMapEnvSource(name=settings.config_map)))
    if settings.credentials_secret:
        env_from.append(k8s.V1EnvFromSource(
            secret_ref=k8s.V1SecretEnvSource(name=settings.credentials_secret)))
    cpu = str(request.executor_cores)
    container = k8s.V1Container(
        name=CONTAINER_NAME,
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        args=[request.spec_uri],
        env=[k8s.V1EnvVar(name=k, value=v) for k, v in sorted(settings.env.items())] or None,
        env_from=env_from or None,
        # A CPU limit equal to the importer's executor cores: local[*] Spark sizes itself
        # from the CPUs the JVM sees, which follow the limit, not the request.
        resources=k8s.V1ResourceRequirements(
            requests={"cpu": cpu, "memory": settings.memory},
            limits={"cpu": cpu, "memory": settings.memory}),
        security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=k8s.V1Capabilities(drop=["ALL"])),
    )
    pod_spec = k8s.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        service_account_name=settings.service_account,
        automount_service_account_token=settings.service_account is not None,
        security_context=k8s.V1PodSecurityContext(run_as_non_root=True),
    )
    return k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k8s.V1ObjectMeta(
            generate_name=(f"{settings.name_prefix}-{_name_part(request.job_id, 24)}"
                           f"-a{request.attempt}-"),
            namespace=settings.namespace,
            labels=labels,
            annotations=annotations),
        spec=k8s.V1JobSpec(
            backoff_limit=0,
            active_deadline_seconds=(math.ceil(request.timeout_seconds)
                                     if request.timeout_seconds else None),
            ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=pod_spec)),
    )


class KubernetesLauncher:
    """Launches runners as Jobs through the Kubernetes API.

    ``batch`` and ``core`` default to API objects configured from the pod's service
    account (in a cluster) or from ``~/.kube/config``; tests pass recording doubles.
    """

    def __init__(self, settings: KubernetesSettings, batch: k8s.BatchV1Api | None = None,
                 core: k8s.CoreV1Api | None = None) -> None:
        if batch is None or core is None:
            api_client = _default_api_client()
            batch = batch or k8s.BatchV1Api(api_client)
            core = core or k8s.CoreV1Api(api_client)
        self.settings = settings
        self._batch = batch
        self._core = core

    def launch(self, request: LaunchRequest) -> KubernetesJobHandle:
        """Create the Job; raise ``LaunchError`` if the API refuses it or cannot be reached."""
        body = job_manifest(self.settings, request)
        try:
            created = self._batch.create_namespaced_job(self.settings.namespace, body)
        except ApiException as exc:
            raise LaunchError(f"Kubernetes refused the runner Job for job {request.job_id} "
                              f"attempt {request.attempt}: HTTP {exc.status} {exc.reason}: "
                              f"{(exc.body or '')[:500]}") from exc
        except OSError as exc:
            raise LaunchError(f"Kubernetes API unreachable launching job {request.job_id} "
                              f"attempt {request.attempt}: {exc}") from exc
        name = created.metadata.name
        log.info("launched Kubernetes Job %s/%s for %s", self.settings.namespace, name,
                 request.spec_uri)
        return KubernetesJobHandle(name, self.settings.namespace, self._batch, self._core)


class KubernetesJobHandle:
    """One submitted Job; see the module docstring for how its end maps to RunnerExit."""

    def __init__(self, name: str, namespace: str, batch: k8s.BatchV1Api,
                 core: k8s.CoreV1Api) -> None:
        self.name = name
        self.namespace = namespace
        self._batch = batch
        self._core = core
        self._exit: RunnerExit | None = None

    def poll(self) -> RunnerExit | None:
        """The runner's exit once the Job has finished, else None.

        One or two short API reads; an API error counts as "no news yet", because a
        flaky API server says nothing about the runner.
        """
        if self._exit is not None:
            return self._exit
        try:
            self._exit = self._read_exit()
        except ApiException as exc:
            if exc.status == 404:
                self._exit = RunnerExit(exit_code=None, stderr_tail=(
                    f"Kubernetes Job {self.namespace}/{self.name} disappeared before "
                    "its end was seen"))
            else:
                log.warning("Kubernetes API error polling Job %s/%s: HTTP %s %s",
                            self.namespace, self.name, exc.status, exc.reason)
        except OSError as exc:
            log.warning("Kubernetes API unreachable polling Job %s/%s: %s",
                        self.namespace, self.name, exc)
        return self._exit

    def kill(self) -> None:
        """Delete the Job and its pod (Kubernetes sends SIGTERM, then SIGKILL)."""
        self._delete()
        if self._exit is None:
            self._exit = RunnerExit(exit_code=None, signal=int(signal.SIGKILL), stderr_tail=(
                f"Kubernetes Job {self.namespace}/{self.name} deleted by the dispatcher"))

    def _read_exit(self) -> RunnerExit | None:
        job = self._batch.read_namespaced_job_status(self.name, self.namespace)
        failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
        if failed is not None and failed.reason == "DeadlineExceeded":
            return RunnerExit(exit_code=None, timed_out=True, stderr_tail=(
                f"Kubernetes Job {self.name}: {failed.message or 'DeadlineExceeded'}"))
        finished = (job.status and (job.status.succeeded or job.status.failed)) or failed
        pod = self._pod()
        status = _runner_status(pod)
        if finished or (status and status.state and status.state.terminated):
            return self._terminated_exit(pod, status)
        waiting = status.state.waiting if status and status.state else None
        if waiting is not None and waiting.reason in _STUCK_REASONS:
            # The pod would wait until the deadline; free the slot and let the dispatcher
            # retry (or dead-letter) like any other infrastructure failure.
            self._delete()
            return RunnerExit(exit_code=None, stderr_tail=(
                f"runner pod {pod.metadata.name} cannot start: {waiting.reason}: "
                f"{waiting.message or ''}".rstrip(": ")))
        return None

    def _pod(self) -> k8s.V1Pod | None:
        pods = self._core.list_namespaced_pod(
            self.namespace, label_selector=f"job-name={self.name}").items
        if not pods:
            return None
        # With backoffLimit 0 there is one pod, but a replaced pod (node loss) adds another.
        return max(pods, key=lambda p: (p.metadata.creation_timestamp.timestamp()
                                        if p.metadata.creation_timestamp else 0.0))

    def _terminated_exit(self, pod: k8s.V1Pod | None,
                         status: k8s.V1ContainerStatus | None) -> RunnerExit:
        terminated = status.state.terminated if status and status.state else None
        if terminated is None:
            return RunnerExit(exit_code=None, stderr_tail=(
                f"Kubernetes Job {self.name} finished but its runner container left no "
                "exit status (pod evicted or deleted?)"))
        tail = self._log_tail(pod)
        if terminated.reason and terminated.reason not in ("Completed", "Error"):
            tail = f"{tail}\n[{terminated.reason}] {terminated.message or ''}".strip()
        code = terminated.exit_code
        if terminated.signal:
            return RunnerExit(exit_code=None, signal=terminated.signal, stderr_tail=tail)
        if code is not None and code > 128:
            # Container runtimes report death by signal N as 128+N (137: SIGKILL, OOM).
            return RunnerExit(exit_code=None, signal=code - 128, stderr_tail=tail)
        return RunnerExit(exit_code=code, stderr_tail=tail)

    def _log_tail(self, pod: k8s.V1Pod | None) -> str:
        if pod is None:
            return ""
        try:
            return self._core.read_namespaced_pod_log(
                pod.metadata.name, self.namespace, container=CONTAINER_NAME,
                tail_lines=_LOG_TAIL_LINES) or ""
        except (ApiException, OSError) as exc:
            return f"(runner log unavailable: {exc})"

    def _delete(self) -> None:
        try:
            self._batch.delete_namespaced_job(
                self.name, self.namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not delete Kubernetes Job %s/%s: HTTP %s %s",
                            self.namespace, self.name, exc.status, exc.reason)


def _condition(job: k8s.V1Job, kind: str) -> k8s.V1JobCondition | None:
    for condition in (job.status.conditions if job.status else None) or ():
        if condition.type == kind and condition.status == "True":
            return condition
    return None


def _runner_status(pod: k8s.V1Pod | None) -> k8s.V1ContainerStatus | None:
    if pod is None or pod.status is None:
        return None
    for status in pod.status.container_statuses or ():
        if status.name == CONTAINER_NAME:
            return status
    return None


def _default_api_client() -> k8s.ApiClient:
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise LaunchError(f"no Kubernetes configuration (not in a cluster and no "
                              f"usable kubeconfig): {exc}") from exc
    return k8s.ApiClient()
