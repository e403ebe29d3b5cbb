"""The Kubernetes launcher: one Kubernetes Job per runner attempt.

Each attempt becomes a Job running the runner image with the spec URI and the attempt's
result name as its arguments (the image's entrypoint is ``python -m runner``). The Job
never retries by itself (``backoffLimit: 0``): retries are the dispatcher's decision,
taken on the exit code, exactly as with the subprocess and Docker launchers. The
dispatcher's timeout becomes the Job's ``activeDeadlineSeconds``, so Kubernetes enforces
it even if the dispatcher is gone.

Each Job is named after its spec and attempt (:func:`job_name`): a dispatcher restarted
while its predecessor's runner still runs gets 409 Conflict when it launches the same
attempt, and adopts the existing Job instead of starting a second runner. Every API call
has a deadline; an API server that fails or cannot be reached is a ``LaunchError`` at
launch and "no news yet" while polling.

Credentials reach the runner only through ``envFrom`` a named Secret: the manifest
carries the Secret's name, never a value. Non-secret settings (S3 endpoint, Spark
master, metastore URL, ...) come from a named ConfigMap and/or plain ``env`` entries.

How a Job ends, mapped to :class:`~dispatcher.launch.RunnerExit`:

======================================  ==============================================
the runner container exited with 0..128  ``exit_code`` as is (0, 64, 65, 75, ...)
it exited with 128+N (137 = SIGKILL,     ``exit_code=None, signal=N``: killed, e.g.
OOMKilled)                               out of memory; the reason is in ``stderr_tail``
the Job hit activeDeadlineSeconds        ``exit_code=None, timed_out=True``
the pod cannot start (ImagePullBackOff,  the Job is deleted; ``exit_code=None,
InvalidImageName, a missing Secret...;   infrastructure="kubernetes"`` with the reason:
ErrImagePull or Unschedulable once they  the runner never ran, so the attempt is not
lasted ``pending_limit_seconds``)        spent
the Job vanished or was deleted          ``exit_code=None``
======================================  ==============================================

Requires the ``kubernetes`` extra (``pip install 'cdm-spark-events[kubernetes]'``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import signal
import time
from collections.abc import Callable, Mapping

import attrs
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from common.credentials import is_credential_name
from dispatcher.launch import LauncherKind, LaunchError, LaunchRequest, RunnerExit

log = logging.getLogger(__name__)

APP_NAME = "cdm-spark-events-runner"
LABEL_JOB_ID = "cdm-spark-events.kbase.us/job-id"
LABEL_ATTEMPT = "cdm-spark-events.kbase.us/attempt"
LABEL_IMPORTER = "cdm-spark-events.kbase.us/importer"
ANNOTATION_SPEC_URI = "cdm-spark-events.kbase.us/spec-uri"
ANNOTATION_JOB_ID = "cdm-spark-events.kbase.us/job-id"
CONTAINER_NAME = "runner"

# Waiting reasons after which the pod will not start without someone changing something
# (the image, the Secret, the ConfigMap).
_STUCK_REASONS = frozenset({
    "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError",
})
# Conditions the cluster may still resolve (a registry hiccup, a node being added): they
# end the attempt only once they have lasted KubernetesSettings.pending_limit_seconds.
_SLOW_REASONS = frozenset({"ErrImagePull", "Unschedulable"})
# What the client raises when it cannot reach the API server or the server fails.
_UNREACHABLE = (urllib3.exceptions.HTTPError, OSError)
_LOG_TAIL_LINES = 40


def _no_credentials(instance: object, attribute: attrs.Attribute, env: dict[str, str]) -> None:
    # The manifest is visible to anyone who can read Jobs; credentials belong in the Secret.
    leaked = sorted(name for name in env if is_credential_name(name))
    if leaked:
        raise ValueError(f"env must not carry credentials ({', '.join(leaked)}): "
                         "put them in the Secret named by credentials_secret")


@attrs.frozen
class KubernetesSettings:
    """``launcher.kubernetes``: where and how runner Jobs are created.

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
    ``name_prefix``                 start of each Job's name
    ``request_timeout_seconds``     deadline of every API call
    ``poll_interval_seconds``       running Jobs are listed at most this often
    ``pending_limit_seconds``       how long a pod may stay unschedulable or fail to
                                    pull its image before the attempt is given up
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
    request_timeout_seconds: float = 10.0
    poll_interval_seconds: float = 10.0
    pending_limit_seconds: float = 300.0


def label_value(text: str) -> str:
    """``text`` made a valid label value: at most 63 of ``[A-Za-z0-9-_.]``, alphanumeric
    at both ends (the full value goes into an annotation when it matters)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def _name_part(text: str, length: int) -> str:
    """A lowercase DNS-label fragment of ``text`` for generated Job names."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length].strip("-") or "x"


def job_name(settings: KubernetesSettings, request: LaunchRequest) -> str:
    """``<prefix>-<job id>-<hash of the spec URI>-a<attempt>``, a valid Job name (at most
    63 characters): the same for the same attempt in any dispatcher process, so a
    restarted dispatcher meets its predecessor's Job (409) instead of making a second."""
    digest = hashlib.sha256(request.spec_uri.encode()).hexdigest()[:10]
    tail = f"-{digest}-a{request.attempt}"
    head = f"{_name_part(settings.name_prefix, 20)}-{_name_part(request.job_id, 24)}"
    return (head[:63 - len(tail)].rstrip("-") + tail).lower()


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
        args=request.runner_args,
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
            name=job_name(settings, request),
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


APP_SELECTOR = f"app.kubernetes.io/name={APP_NAME}"


class KubernetesLauncher:
    """Launches runners as Jobs through the Kubernetes API.

    ``batch`` and ``core`` default to API objects configured from the pod's service
    account (in a cluster) or from ``~/.kube/config``; tests pass recording doubles.

    Handles do not call the API each: the launcher lists all runner Jobs and their pods
    (one list call each, by label) at most every ``poll_interval_seconds``, and every
    handle reads its Job from that snapshot.
    """

    def __init__(self, settings: KubernetesSettings, batch: k8s.BatchV1Api | None = None,
                 core: k8s.CoreV1Api | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if batch is None or core is None:
            api_client = _default_api_client()
            batch = batch or k8s.BatchV1Api(api_client)
            core = core or k8s.CoreV1Api(api_client)
        self.settings = settings
        self._batch = batch
        self._core = core
        self._clock = clock
        self._listed_at: float | None = None
        self._jobs: dict[str, k8s.V1Job] = {}
        self._pods: dict[str, list[k8s.V1Pod]] = {}

    @classmethod
    def from_settings(cls, settings: KubernetesSettings,
                      environ: Mapping[str, str]) -> KubernetesLauncher:
        """The launcher of ``launcher.kubernetes``. The runners' environment is the
        Job's (Secret, ConfigMap, ``env``): ``environ`` is not theirs and is not read."""
        return cls(settings)

    @property
    def _timeout(self) -> float:
        return self.settings.request_timeout_seconds

    def close(self) -> None:
        """Nothing is held between launches."""

    def launch(self, request: LaunchRequest) -> KubernetesJobHandle:
        """Create the attempt's Job, or adopt it if a previous dispatcher created it.

        Raises ``LaunchError`` if the API refuses the Job, fails (5xx, 401, 403), cannot be
        reached or does not answer within ``request_timeout_seconds``.
        """
        body = job_manifest(self.settings, request)
        name, namespace = body.metadata.name, self.settings.namespace
        what = f"the runner Job {namespace}/{name} (job {request.job_id} attempt {request.attempt})"
        try:
            self._batch.create_namespaced_job(namespace, body, _request_timeout=self._timeout)
            log.info("launched Kubernetes Job %s/%s for %s", namespace, name, request.spec_uri)
        except ApiException as exc:
            if exc.status != 409:
                raise LaunchError(f"Kubernetes refused {what}: HTTP {exc.status} {exc.reason}: "
                                  f"{(exc.body or '')[:500]}") from exc
            self._adopt(name, what)
        except _UNREACHABLE as exc:
            raise LaunchError(f"Kubernetes API unreachable creating {what}: "
                              f"{type(exc).__name__}: {exc}") from exc
        return KubernetesJobHandle(name, self, created_at=self._clock())

    def _adopt(self, name: str, what: str) -> None:
        try:
            existing = self._batch.read_namespaced_job(name, self.settings.namespace,
                                                       _request_timeout=self._timeout)
        except (ApiException, *_UNREACHABLE) as exc:
            raise LaunchError(f"{what} exists but cannot be read: {exc}") from exc
        if existing.metadata.deletion_timestamp is not None:
            raise LaunchError(f"{what} is still being deleted; launch again later")
        log.info("adopted the existing Kubernetes Job %s/%s", self.settings.namespace, name)

    def snapshot(self) -> float | None:
        """List the runner Jobs and pods unless that was done less than
        ``poll_interval_seconds`` ago; return the time of the latest listing (None before
        the first that succeeded). API failures are logged and leave the last snapshot."""
        now = self._clock()
        if (self._listed_at is not None
                and now - self._listed_at < self.settings.poll_interval_seconds):
            return self._listed_at
        namespace = self.settings.namespace
        try:
            jobs = self._batch.list_namespaced_job(namespace, label_selector=APP_SELECTOR,
                                                   _request_timeout=self._timeout).items
            pods = self._core.list_namespaced_pod(namespace, label_selector=APP_SELECTOR,
                                                  _request_timeout=self._timeout).items
        except (ApiException, *_UNREACHABLE) as exc:
            log.warning("cannot list runner Jobs in %s (will try again): %s: %s", namespace,
                        type(exc).__name__, str(exc)[:300])
            return self._listed_at
        self._jobs = {job.metadata.name: job for job in jobs}
        self._pods = {}
        for pod in pods:
            owner = (pod.metadata.labels or {}).get("job-name")
            if owner:
                self._pods.setdefault(owner, []).append(pod)
        self._listed_at = now
        return now

    def job(self, name: str) -> k8s.V1Job | None:
        return self._jobs.get(name)

    def pod(self, name: str) -> k8s.V1Pod | None:
        pods = self._pods.get(name)
        if not pods:
            return None
        # With backoffLimit 0 there is one pod, but a replaced pod (node loss) adds another.
        return max(pods, key=lambda p: (p.metadata.creation_timestamp.timestamp()
                                        if p.metadata.creation_timestamp else 0.0))

    def log_tail(self, pod: k8s.V1Pod | None) -> str:
        if pod is None:
            return ""
        try:
            return self._core.read_namespaced_pod_log(
                pod.metadata.name, self.settings.namespace, container=CONTAINER_NAME,
                tail_lines=_LOG_TAIL_LINES, _request_timeout=self._timeout) or ""
        except (ApiException, *_UNREACHABLE) as exc:
            return f"(runner log unavailable: {exc})"

    def delete(self, name: str) -> None:
        try:
            self._batch.delete_namespaced_job(
                name, self.settings.namespace, propagation_policy="Background",
                _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not delete Kubernetes Job %s/%s: HTTP %s %s",
                            self.settings.namespace, name, exc.status, exc.reason)
        except _UNREACHABLE as exc:
            log.warning("could not delete Kubernetes Job %s/%s: %s", self.settings.namespace,
                        name, exc)


class KubernetesJobHandle:
    """One submitted (or adopted) Job; see the module docstring for how its end maps to
    RunnerExit. Reads the launcher's paced snapshot: never an API call per poll."""

    def __init__(self, name: str, launcher: KubernetesLauncher, created_at: float) -> None:
        self.name = name
        self.namespace = launcher.settings.namespace
        self._launcher = launcher
        self._created_at = created_at
        self._seen = False
        self._misses = 0
        self._last_listing: float | None = None
        self._slow_since: float | None = None
        self._exit: RunnerExit | None = None

    def poll(self) -> RunnerExit | None:
        """The runner's exit once the Job has finished, else None (also when the API
        cannot be reached: that says nothing about the runner)."""
        if self._exit is not None:
            return self._exit
        listed_at = self._launcher.snapshot()
        if listed_at is None or listed_at < self._created_at:
            return None
        job = self._launcher.job(self.name)
        if job is None:
            if listed_at == self._last_listing:
                return None
            self._last_listing = listed_at
            # A listing may lag a create by a moment: absent from three listings, or from
            # one after being seen, the Job is gone.
            self._misses += 1
            if self._seen or self._misses > 2:
                self._exit = RunnerExit(exit_code=None, stderr_tail=(
                    f"Kubernetes Job {self.namespace}/{self.name} disappeared before "
                    "its end was seen"))
            return self._exit
        self._seen, self._misses = True, 0
        self._exit = self._read_exit(job, self._launcher.pod(self.name), listed_at)
        return self._exit

    def kill(self) -> None:
        """Delete the Job and its pod (Kubernetes sends SIGTERM, then SIGKILL)."""
        self._launcher.delete(self.name)
        if self._exit is None:
            self._exit = RunnerExit(exit_code=None, signal=int(signal.SIGKILL), stderr_tail=(
                f"Kubernetes Job {self.namespace}/{self.name} deleted by the dispatcher"))

    def _read_exit(self, job: k8s.V1Job, pod: k8s.V1Pod | None,
                   now: float) -> RunnerExit | None:
        failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
        if failed is not None and failed.reason == "DeadlineExceeded":
            return RunnerExit(exit_code=None, timed_out=True, stderr_tail=(
                f"Kubernetes Job {self.name}: {failed.message or 'DeadlineExceeded'}"))
        finished = (job.status and (job.status.succeeded or job.status.failed)) or failed
        status = _runner_status(pod)
        if finished or (status and status.state and status.state.terminated):
            return self._terminated_exit(pod, status)
        reason, message = _not_starting(pod, status)
        if reason is None:
            self._slow_since = None
            return None
        if reason in _SLOW_REASONS:
            self._slow_since = self._slow_since if self._slow_since is not None else now
            if now - self._slow_since < self._launcher.settings.pending_limit_seconds:
                return None
        # The pod would wait until the deadline; free the slot. The runner never ran, so
        # the attempt is not spent (the next launch of it creates the Job anew).
        self._launcher.delete(self.name)
        assert pod is not None  # a reason not to start is read from the pod
        return RunnerExit(exit_code=None, infrastructure="kubernetes", stderr_tail=(
            f"runner pod {pod.metadata.name} cannot start: {reason}: "
            f"{message or ''}".rstrip(": ")))

    def _terminated_exit(self, pod: k8s.V1Pod | None,
                         status: k8s.V1ContainerStatus | None) -> RunnerExit:
        terminated = status.state.terminated if status and status.state else None
        if terminated is None:
            return RunnerExit(exit_code=None, stderr_tail=(
                f"Kubernetes Job {self.name} finished but its runner container left no "
                "exit status (pod evicted or deleted?)"))
        tail = self._launcher.log_tail(pod)
        if terminated.reason and terminated.reason not in ("Completed", "Error"):
            tail = f"{tail}\n[{terminated.reason}] {terminated.message or ''}".strip()
        code = terminated.exit_code
        if terminated.signal:
            return RunnerExit(exit_code=None, signal=terminated.signal, stderr_tail=tail)
        if code is not None and code > 128:
            # Container runtimes report death by signal N as 128+N (137: SIGKILL, OOM).
            return RunnerExit(exit_code=None, signal=code - 128, stderr_tail=tail)
        return RunnerExit(exit_code=code, stderr_tail=tail)


def _not_starting(pod: k8s.V1Pod | None,
                  status: k8s.V1ContainerStatus | None) -> tuple[str | None, str | None]:
    """Why the runner's pod is not starting, if it is stuck: a waiting reason of the
    container, or an Unschedulable pod condition."""
    waiting = status.state.waiting if status and status.state else None
    if waiting is not None and waiting.reason in _STUCK_REASONS | _SLOW_REASONS:
        return waiting.reason, waiting.message
    for condition in (pod.status.conditions if pod and pod.status else None) or ():
        if (condition.type == "PodScheduled" and condition.status == "False"
                and condition.reason == "Unschedulable"):
            return condition.reason, condition.message
    return None, None


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


#: The kind of this module (see :mod:`dispatcher.launch`).
LAUNCHER_KINDS = {
    "kubernetes": LauncherKind(name="kubernetes", settings=KubernetesSettings,
                               factory=KubernetesLauncher.from_settings),
}
