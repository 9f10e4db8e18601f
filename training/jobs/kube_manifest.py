"""The Kubernetes Job that trains one job of the queue, as a plain dict.

``KubeSettings.from_settings`` takes the ``KTL_K8S_*`` variables from the runner's
settings (training/jobs/settings.py); ``job_manifest`` is a
pure function of a job and the settings (tests validate what it builds with the
Kubernetes client's own models). ``training.jobs.kube`` submits it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from models.jobqueue.job_runner import runner_argv
from models.jobqueue.jobs import Job
from training.jobs.settings import CPU, RunnerSettings

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
CONTAINER = "train"
JOB_ID_LABEL = "ktl.job-id"
LABELS = {"app.kubernetes.io/name": "ktl", "app.kubernetes.io/component": "train-job"}
UID = 10001  # the Dockerfile's user
_KERAS_SEED = "/keras-seed"


def _namespace(settings: RunnerSettings, namespace_file: Path) -> str:
    if settings.k8s_namespace:
        return settings.k8s_namespace
    with contextlib.suppress(OSError):
        return namespace_file.read_text().strip() or "default"
    return "default"


@dataclass(frozen=True)
class KubeSettings:
    """Where and how the Jobs run, from the runner's ``KTL_K8S_*`` settings."""

    image: str
    namespace: str
    store: str  # the store's absolute path, in the runner's pod and in the Job's
    store_claim: str = "ktl-model-store"
    cpu: str = "2"
    memory: str = "4Gi"
    deadline_s: int = 86400
    ttl_s: int = 86400
    pull_policy: str = "IfNotPresent"
    keras_home: str = "/opt/keras"
    data_root: str | None = None  # KTL_DATA_ROOT, mounted from data_claim when set
    data_claim: str | None = None

    @classmethod
    def from_env(
        cls,
        store: str | Path,
        environ: Mapping[str, str] | None = None,
        namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE,
    ) -> KubeSettings:
        """``from_settings`` of the runner's settings read from ``environ`` (default
        the process's environment)."""
        settings = RunnerSettings.from_env(environ)
        keras_home = (os.environ if environ is None else environ).get("KERAS_HOME", "")
        return cls.from_settings(store, settings, namespace_file, keras_home)

    @classmethod
    def from_settings(
        cls,
        store: str | Path,
        settings: RunnerSettings,
        namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE,
        keras_home: str = "",
    ) -> KubeSettings:
        """The Jobs' settings from the runner's (the ``KTL_K8S_*`` variables)."""
        if not settings.k8s_image:
            raise ConfigError(
                "KTL_JOB_RUNNER=kubernetes needs KTL_K8S_IMAGE, the image the training Jobs "
                "run: this service's own image (deploy/training/ sets both to the same)"
            )
        data_claim, data_root = settings.k8s_data_claim, settings.data_root
        if data_claim and not data_root:
            raise ConfigError("KTL_K8S_DATA_CLAIM is set: it is mounted at KTL_DATA_ROOT, unset")
        return cls(
            image=settings.k8s_image,
            namespace=_namespace(settings, namespace_file),
            store=str(Path(store).resolve()),
            store_claim=settings.k8s_store_claim,
            cpu=settings.k8s_cpu,
            memory=settings.k8s_memory,
            deadline_s=settings.k8s_deadline_s,
            ttl_s=settings.k8s_ttl_s,
            pull_policy=settings.k8s_pull_policy,
            keras_home=keras_home.strip() or "/opt/keras",
            data_root=str(data_root.resolve()) if data_root and data_claim else None,
            data_claim=data_claim,
        )

    @property
    def threads(self) -> int:
        """TensorFlow's threads: the CPUs the pod may use, rounded up."""
        number, milli = CPU.fullmatch(self.cpu).groups()  # type: ignore[union-attr]
        return max(1, math.ceil(float(number) / (1000 if milli else 1)))


def job_name(job: Job) -> str:
    """``ktl-train-<id>-<attempt>``: a resumed job gets a Job of its own (the finished
    one of its earlier attempt may still exist until its TTL passes)."""
    return f"ktl-train-{job.id}-{max(job.attempts, 1)}".lower()[:63].rstrip("-")


def job_manifest(job: Job, settings: KubeSettings) -> dict[str, Any]:
    """The ``batch/v1`` Job that trains ``job``: Kubernetes never retries it
    (``backoffLimit: 0``); the runner resumes a job, from its last finished epoch."""
    labels = {**LABELS, JOB_ID_LABEL: job.id}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(job),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {"ktl.model": job.name, "ktl.attempt": str(job.attempts)},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.deadline_s,
            "ttlSecondsAfterFinished": settings.ttl_s,
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec(job, settings)},
        },
    }


def _pod_spec(job: Job, settings: KubeSettings) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": "store", "persistentVolumeClaim": {"claimName": settings.store_claim}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "keras", "emptyDir": {}},
    ]
    if settings.data_claim:
        claim = {"claimName": settings.data_claim, "readOnly": True}
        volumes.append({"name": "data", "persistentVolumeClaim": claim})
    return {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,  # the training pod never talks to the API
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Keras reads KERAS_HOME (the weights baked into the image) only while it can
        # write there; the root filesystem is read-only, so a writable copy is made first.
        "initContainers": [_seed_keras_home(settings)],
        "containers": [_train_container(job, settings)],
        "volumes": volumes,
    }


def _security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _resources(settings: KubeSettings) -> dict[str, Any]:
    amounts = {"cpu": settings.cpu, "memory": settings.memory}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _seed_keras_home(settings: KubeSettings) -> dict[str, Any]:
    copy = (
        "import shutil, sys; "
        "shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True, symlinks=True)"
    )
    return {
        "name": "keras-home",
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "command": ["python", "-c", copy, settings.keras_home, _KERAS_SEED],
        "securityContext": _security(),
        "resources": _resources(settings),
        "volumeMounts": [{"name": "keras", "mountPath": _KERAS_SEED}],
    }


def _train_container(job: Job, settings: KubeSettings) -> dict[str, Any]:
    # The pod has CPUs of its own: TensorFlow takes them all (the local runner's child
    # takes KTL_JOB_THREADS and a lower priority, to leave the service its cores).
    threads = settings.threads
    env = {
        "KTL_MODEL_STORE": settings.store,
        "KERAS_HOME": settings.keras_home,
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": str(min(2, threads)),
        "OMP_NUM_THREADS": str(threads),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }
    mounts: list[dict[str, Any]] = [
        {"name": "store", "mountPath": settings.store},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "keras", "mountPath": settings.keras_home},
    ]
    if settings.data_claim and settings.data_root:
        mounts.append({"name": "data", "mountPath": settings.data_root, "readOnly": True})
    argv = runner_argv(settings.store, job_id=job.id, python="python")
    split = argv.index("--store")
    return {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "command": argv[:split],
        "args": argv[split:],
        "env": [{"name": name, "value": value} for name, value in env.items()],
        "securityContext": _security(),
        "resources": _resources(settings),
        "volumeMounts": mounts,
    }
