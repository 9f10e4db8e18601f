"""Training jobs as Kubernetes Jobs (``KTL_JOB_RUNNER=kubernetes``).

The job runner beside the service claims a job from the queue as always; this
launcher then creates a ``batch/v1`` Job from the service's own image that runs
the same child the local launcher runs (``python -m training.jobs.runner --run-job ID
--store S``), with the store's claim mounted at the same path so the paths in
``job.json`` hold in the pod too (``training.jobs.kube_manifest`` builds it). The child
writes its log, epochs and outcome into the store itself; the launcher creates,
watches and deletes Jobs, and adds to the job's log what only Kubernetes knows (an
image that cannot be pulled, a deadline passed, a container killed for memory).

The ``kubernetes`` client is imported only when a launcher is made
(``pip install 'ktl[kubernetes]'``). docs/jobs-kubernetes.md says how to run it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.errors import KtlError, OperationalError
from models.jobqueue.jobs import Job, JobQueue
from training.jobs.kube_manifest import (
    CONTAINER,
    JOB_ID_LABEL,
    KubeSettings,
    job_manifest,
    job_name,
)
from training.jobs.settings import RunnerSettings

__all__ = ["KubeSettings", "KubernetesLauncher", "connect", "job_manifest", "job_name"]

_NAME = re.compile(r"ktl-train-(\d{8}-\d{6}-[0-9a-f]{6})-(\d+)")
# Reasons a pod waits that waiting will not cure: the job fails now, not at its deadline.
_HOPELESS = {
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "ErrImageNeverPull",
}
_SAYS = "kubernetes:"  # what the launcher's lines in a job's log start with
_ENDED = 1  # the status poll() reports for a failed Job whose container gave none
_log = logging.getLogger(__name__)


def connect() -> tuple[Any, Any]:
    """The client's ``BatchV1Api`` and ``CoreV1Api``, configured from the pod's service
    account, else from a kubeconfig (``~/.kube/config``, ``KUBECONFIG``)."""
    try:
        import kubernetes
    except ImportError:
        raise OperationalError(
            "KTL_JOB_RUNNER=kubernetes needs the Kubernetes client: pip install "
            "'ktl[kubernetes]' (the ktl-serve-train image has it)"
        ) from None
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException as in_cluster:
        try:
            kubernetes.config.load_kube_config()
        except (kubernetes.config.ConfigException, OSError, TypeError) as kubeconfig:
            raise OperationalError(
                "KTL_JOB_RUNNER=kubernetes: no Kubernetes API to submit jobs to: not in a "
                f"pod with a service account ({in_cluster}) and no usable kubeconfig "
                f"({kubeconfig}); deploy with deploy/training/ or set KTL_JOB_RUNNER=local"
            ) from None
    return kubernetes.client.BatchV1Api(), kubernetes.client.CoreV1Api()


def _client_errors() -> tuple[type[BaseException], ...]:
    """What a call of the client raises when the API answers an error or cannot be reached."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    return ApiException, urllib3.exceptions.HTTPError, OSError


class _Gone(Exception):
    """The Kubernetes Job does not exist (any more)."""


def _api_status(exc: BaseException) -> int | None:
    """The HTTP status of the client's ``ApiException``; None for a connection error."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) and status > 0 else None


def _explain(exc: BaseException, doing: str) -> OperationalError:
    status = _api_status(exc)
    if status in (401, 403):
        hint = "the service account needs the Role of deploy/training/rbac.yaml"
        return OperationalError(f"Kubernetes refused to {doing} ({status}): {hint}")
    reason = getattr(exc, "reason", None) or exc
    return OperationalError(f"Could not {doing} on Kubernetes: {reason}")


def _conditions(job: Any, *kinds: str) -> list[Any]:
    conditions = (job.status.conditions if job.status else None) or []
    return [c for c in conditions if c.type in kinds and c.status == "True"]


def _succeeded(job: Any) -> bool:
    return bool(job.status and job.status.succeeded) or bool(_conditions(job, "Complete"))


def _failed(job: Any) -> bool:
    return bool(job.status and job.status.failed) or bool(_conditions(job, "Failed"))


def _statuses(pod: Any) -> list[Any]:
    status = pod.status
    if status is None:
        return []
    return [*(status.init_container_statuses or []), *(status.container_statuses or [])]


def _exit(pods: list[Any]) -> tuple[int | None, str]:
    """The first non-zero exit of a container of the pods, and what Kubernetes says of it."""
    for pod in pods:
        for container in _statuses(pod):
            ended = container.state.terminated if container.state else None
            if ended is not None and ended.exit_code:
                hint = "; raise KTL_K8S_MEMORY" if ended.reason == "OOMKilled" else ""
                what = f"{ended.reason or 'ended'} with status {ended.exit_code}{hint}"
                return ended.exit_code, f"container {container.name} {what}"
    return None, ""


class KubernetesLauncher:
    """The runner's ``Launcher`` (training.jobs.runner) for ``KTL_JOB_RUNNER=kubernetes``:
    a handle is the name of the Kubernetes Job."""

    kind = "kubernetes"

    def __init__(self, settings: KubeSettings, *, batch: Any, core: Any):
        self.settings = settings
        self.batch, self.core = batch, core
        self.queue = JobQueue(settings.store)
        self._errors = _client_errors()
        self._said: set[tuple[str, str]] = set()

    @classmethod
    def from_env(
        cls, store: str | Path, environ: Mapping[str, str] | None = None
    ) -> KubernetesLauncher:
        settings = KubeSettings.from_env(store, environ)
        batch, core = connect()
        return cls(settings, batch=batch, core=core)

    @classmethod
    def from_settings(cls, store: str | Path, settings: RunnerSettings) -> KubernetesLauncher:
        """The launcher of the runner's settings (read once at its start)."""
        keras_home = os.environ.get("KERAS_HOME", "")
        kube = KubeSettings.from_settings(store, settings, keras_home=keras_home)
        batch, core = connect()
        return cls(kube, batch=batch, core=core)

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    def start(self, job: Job) -> str:
        """Create the job's Kubernetes Job; when one for the same job still runs (its
        runner died, the pod did not), follow that one instead of training twice."""
        earlier = self._running(job.id)
        if earlier is not None:
            self._say(earlier, f"following the Kubernetes Job {earlier}, still running")
            return earlier
        manifest = job_manifest(job, self.settings)
        name = manifest["metadata"]["name"]
        try:
            self.batch.create_namespaced_job(self.namespace, manifest)
        except self._errors as exc:
            if _api_status(exc) != 409:  # 409: it exists already, from this very attempt
                raise _explain(exc, f"create the Job {name}") from None
        settings = self.settings
        self._say(
            name,
            f"Kubernetes Job {name} created in namespace {self.namespace} "
            f"(image {settings.image}, cpu {settings.cpu}, memory {settings.memory})",
        )
        return name

    def poll(self, handle: str) -> int | None:
        """0 when the Job succeeded, the container's exit status (else 1) when it failed,
        None while it runs or while the API cannot be reached."""
        try:
            job = self._read(handle)
        except _Gone:
            self._say(handle, f"the Kubernetes Job {handle} no longer exists (deleted?)")
            return _ENDED
        if job is None:
            return None
        if _succeeded(job):
            return 0
        if _failed(job):
            return self._report_failure(handle, job)
        if job.status is not None and job.status.active and not job.status.ready:
            return self._check_waiting(handle)
        return None

    def stop(self, handle: str) -> None:
        """Delete the Job and, in the background, its pod (which gets SIGTERM)."""
        try:
            self.batch.delete_namespaced_job(
                handle, self.namespace, propagation_policy="Background"
            )
        except self._errors as exc:
            if _api_status(exc) != 404:
                raise _explain(exc, f"delete the Job {handle}") from None

    def alive(self, handle: str) -> bool:
        """Whether the Job still runs; True while the API cannot tell (poll decides later)."""
        try:
            job = self._read(handle)
        except _Gone:
            return False
        return job is None or not (_succeeded(job) or _failed(job))

    def _read(self, handle: str) -> Any | None:
        try:
            return self.batch.read_namespaced_job(handle, self.namespace)
        except self._errors as exc:
            status = _api_status(exc)
            if status == 404:
                raise _Gone(handle) from None
            if status in (401, 403):
                raise _explain(exc, f"read the Job {handle}") from None
            _log.warning("Kubernetes Job %s: %s; trying again", handle, exc)
            return None

    def _running(self, job_id: str) -> str | None:
        selector = f"{JOB_ID_LABEL}={job_id}"
        try:
            jobs = self.batch.list_namespaced_job(self.namespace, label_selector=selector).items
        except self._errors as exc:
            raise _explain(exc, "list the training Jobs") from None
        running = [
            job.metadata.name
            for job in jobs or []
            if not (_succeeded(job) or _failed(job) or job.metadata.deletion_timestamp)
        ]
        attempt = {name: int(m.group(2)) for name in running if (m := _NAME.fullmatch(name))}
        return max(running, key=lambda name: attempt.get(name, 0)) if running else None

    def _pods(self, handle: str) -> list[Any]:
        try:
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=f"job-name={handle}"
            )
        except self._errors as exc:
            _log.warning("pods of the Kubernetes Job %s: %s", handle, exc)
            return []
        return list(pods.items or [])

    def _report_failure(self, handle: str, job: Any) -> int:
        pods = self._pods(handle)
        silent = not self._child_wrote(handle)
        status, detail = _exit(pods)
        why = [f"{c.reason}: {c.message}" for c in _conditions(job, "Failed") if c.reason]
        self._say(handle, "; ".join([f"the Kubernetes Job {handle} failed", *why, detail][:4]))
        if silent and pods:
            self._copy_pod_log(handle, pods[0])
        return status or _ENDED

    def _check_waiting(self, handle: str) -> int | None:
        """A pod that cannot start (no such image, a missing Secret): stop the Job now.
        A pod no node can take yet is said once in the job's log, and waited for."""
        for pod in self._pods(handle):
            for container in _statuses(pod):
                waiting = container.state.waiting if container.state else None
                if waiting is not None and waiting.reason in _HOPELESS:
                    self._say(
                        handle,
                        f"pod {pod.metadata.name} cannot start: {waiting.reason}: "
                        f"{waiting.message or ''} (the Job is deleted)",
                    )
                    self.stop(handle)
                    return _ENDED
            for condition in (pod.status.conditions if pod.status else None) or []:
                if condition.type == "PodScheduled" and condition.status == "False":
                    message = f"{condition.reason}: {condition.message}"
                    self._say(handle, f"pod {pod.metadata.name} waits for a node: {message}")
        return None

    def _child_wrote(self, handle: str) -> bool:
        """Whether the job's log has a line from the training process since this Job was
        created (the runner's lines and these start with their own prefixes)."""
        match = _NAME.fullmatch(handle)
        if match is None:
            return True
        lines = self.queue.log_tail(match.group(1), 500)
        since = [i for i, line in enumerate(lines) if handle in line and line.startswith(_SAYS)]
        ours = ("Job runner:", _SAYS)
        return any(not line.startswith(ours) for line in lines[since[0] if since else 0 :])

    def _copy_pod_log(self, handle: str, pod: Any) -> None:
        """The pod's own last lines, for a job whose log had none (it died before the
        child could write any: a bad image, the store not mounted)."""
        try:
            text = self.core.read_namespaced_pod_log(
                pod.metadata.name, self.namespace, container=CONTAINER, tail_lines=20
            )
        except self._errors:
            return
        for line in str(text or "").splitlines():
            self._say(handle, f"pod log: {line}")

    def _say(self, handle: str, message: str) -> None:
        """Into the service's log, and once into the job's own log."""
        if (handle, message) in self._said:
            return
        self._said.add((handle, message))
        _log.info("%s", message)
        match = _NAME.fullmatch(handle)
        if match is not None:
            with contextlib.suppress(OSError, KtlError):
                self.queue.append_log(match.group(1), f"{_SAYS} {message}")
