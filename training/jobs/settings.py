"""The job runner's settings (``python -m training.jobs.runner``): one frozen
pydantic-settings object read from the ``KTL_*`` variables once, in ``main``, and
passed to the launcher it chooses. ``KTL_JOB_RUNNER`` and ``KTL_DATA_ROOT`` are the
service's own definitions (models/settings.py), so both accept the same values."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Annotated, ClassVar

from pydantic import Field

from models.settings import (
    DataRootSetting,
    JobRunnerSetting,
    optional_text,
    parsed,
    whole_number,
)

__all__ = ["RunnerSettings"]

CPU = re.compile(r"(\d+(?:\.\d+)?)(m?)")
MEMORY = re.compile(r"\d+(?:\.\d+)?(?:[kMGTPE]|[KMGTPE]i)?")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _quantity(pattern: re.Pattern[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        value = value.strip()
        if not pattern.fullmatch(value) or not float(re.sub(r"[^\d.]", "", value)):
            raise ValueError("must be a Kubernetes quantity such as 2, 500m or 4Gi")
        return value

    return check


def _seconds(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise ValueError("expected a whole number of seconds above 0")
    return seconds


def _pull_policy(value: str) -> str:
    if value.strip() not in PULL_POLICIES:
        raise ValueError(f"one of {', '.join(PULL_POLICIES)}")
    return value.strip()


def _claim(value: str) -> str:
    return value.strip() or "ktl-model-store"


OptionalText = Annotated[str | None, parsed(optional_text)]


class RunnerSettings(JobRunnerSetting, DataRootSetting):
    """What the runner and its launchers read: the local launcher's priority and
    threads, and where and how Kubernetes Jobs run (``KTL_K8S_*``, checked at the
    runner's start whichever launcher it uses)."""

    what: ClassVar[str] = "job runner setting"

    job_threads: Annotated[int | None, parsed(whole_number(1, 1024))] = Field(
        None, description="TensorFlow threads of a local training job (unset: half the CPUs)"
    )
    job_nice: Annotated[int, parsed(whole_number(0, 19, blank=10))] = Field(
        10, description="nice value of a local training job"
    )
    k8s_image: OptionalText = Field(None, description="image the training Jobs run")
    k8s_namespace: OptionalText = Field(
        None, description="namespace of the training Jobs (unset: the runner's own)"
    )
    k8s_store_claim: Annotated[str, parsed(_claim)] = Field(
        "ktl-model-store", description="PersistentVolumeClaim of the model store"
    )
    k8s_data_claim: OptionalText = Field(
        None, description="PersistentVolumeClaim mounted read-only at KTL_DATA_ROOT"
    )
    k8s_cpu: Annotated[str, parsed(_quantity(CPU))] = Field(
        "2", description="CPUs of a training Job's pod"
    )
    k8s_memory: Annotated[str, parsed(_quantity(MEMORY))] = Field(
        "4Gi", description="memory of a training Job's pod"
    )
    k8s_deadline_s: Annotated[int, parsed(_seconds)] = Field(
        86400, description="longest run of a training Job, in seconds"
    )
    k8s_ttl_s: Annotated[int, parsed(_seconds)] = Field(
        86400, description="seconds a finished training Job is kept"
    )
    k8s_pull_policy: Annotated[str, parsed(_pull_policy)] = Field(
        "IfNotPresent", description="image pull policy of the training Jobs"
    )

    @property
    def threads(self) -> int:
        """``job_threads``, else half the CPUs this process may use (at least 1)."""
        if self.job_threads is not None:
            return self.job_threads
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, (cpus or 1) // 2)
