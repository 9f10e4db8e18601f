"""The local launcher of the job runner (training.jobs.runner): each job's training in a
process of this machine, niced, with capped threads, its output in the job's log, and
killed when the runner dies."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from models.jobqueue.job_runner import runner_argv, with_ktl_path
from models.jobqueue.jobs import Job, JobQueue
from training.jobs.settings import RunnerSettings

_PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 10.0


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn``: the process gets SIGKILL when its parent dies (Linux's
    PR_SET_PDEATHSIG), and is killed at once if the parent died before it could ask."""
    return functools.partial(tie_to_parent, os.getpid(), _prctl())


def tie_to_parent(parent: int, prctl: Callable[..., int] | None = None) -> None:
    """Ask for SIGKILL when the parent dies; die now if ``parent`` already has.
    ``python -m training.jobs.runner --parent PID`` calls it first thing (gunicorn's master
    starts it so), and ``die_with_parent`` before each job's exec."""
    prctl = prctl or _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _prctl() -> Callable[..., int] | None:
    """libc's prctl; None where there is none (not Linux: the runner's stop must do).
    Looked up before a fork: a preexec_fn should not load libraries."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def child_env(settings: RunnerSettings) -> dict[str, str]:
    """The training process's environment: TensorFlow's and OpenMP's threads capped at
    ``KTL_JOB_THREADS`` (default half the CPUs), so predictions keep their cores."""
    threads = settings.threads
    return with_ktl_path(
        {
            **os.environ,
            "TF_NUM_INTRAOP_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": str(min(2, threads)),
            "OMP_NUM_THREADS": str(threads),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        }
    )


class LocalLauncher:
    """Each job's training in a process of this machine: its own session (a cancel
    kills its whole group), niced by ``KTL_JOB_NICE`` (default 10), its threads capped
    (``child_env``), its output appended to the job's ``log.txt``, and killed when
    the runner dies."""

    kind = "local"

    def __init__(
        self,
        store: str | Path,
        grace: float = STOP_GRACE_S,
        settings: RunnerSettings | None = None,
    ):
        self.store = Path(store).resolve()
        self.queue = JobQueue(self.store)
        self.grace = grace
        self.settings = settings if settings is not None else RunnerSettings.from_env()
        self.nice = self.settings.job_nice
        self._children: dict[str, subprocess.Popen] = {}

    def command(self, job: Job) -> list[str]:
        return runner_argv(self.store, job_id=job.id)

    def start(self, job: Job) -> str:
        deathsig = die_with_parent()

        def preexec() -> None:
            os.nice(self.nice)
            deathsig()

        with open(self.queue.log_path(job.id), "ab") as log:
            child = subprocess.Popen(
                self.command(job),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(self.settings),
                start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509 (the runner starts no threads)
            )
        self._children[str(child.pid)] = child
        return str(child.pid)

    def poll(self, handle: str) -> int | None:
        child = self._children.get(handle)
        if child is not None:
            return child.poll()
        return None if self.alive(handle) else 1  # followed from before: no status known

    def stop(self, handle: str) -> None:
        child = self._children.get(handle)
        if child is None and not self.alive(handle):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(handle), signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and self.poll(handle) is None:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(handle), signal.SIGKILL)  # what is left of its group
        if child is not None:
            child.wait()

    def alive(self, handle: str) -> bool:
        """Whether ``handle`` is the pid of a training process of this store."""
        try:
            words = Path(f"/proc/{int(handle)}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return False
        return b"--run-job" in words and os.fsencode(str(self.store)) in words
