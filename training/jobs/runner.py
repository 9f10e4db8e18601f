"""The job runner of a store: ``python -m training.jobs.runner --store S``.

One runner per store (it holds the queue's runner lock) runs the queued training
jobs one at a time, each in a child process (``--run-job ID``, training.jobs.runner_child)
started by a launcher: ``local`` (a process beside the runner: lower priority, capped
threads, killed with the runner) or ``kubernetes`` (a Kubernetes Job per training
job, training.jobs.kube), chosen by ``KTL_JOB_RUNNER``. While a job runs, the runner
copies its finished epochs into the job's record about every second, stops it when
someone cancels it, and records a child that ended without recording its outcome
(killed, out of memory) as failed.

SIGTERM or SIGINT stop the runner: its job's training process is stopped too and the
job stays ``running``; the next runner claims it first and resumes it from its last
finished epoch (training.jobs.runner_child says which state a job resumes). The service
starts a runner beside gunicorn when training is on (service/gunicorn.conf.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from models.errors import ConfigError, KtlError
from models.jobqueue.jobs import Job, JobQueue, Outcome
from models.store import ModelStore
from models.store.progress import JobProgress
from training.jobs.runner_child import forget_state, published_version
from training.jobs.runner_local import LocalLauncher
from training.jobs.settings import RunnerSettings

Log = Callable[[str], None]
KINDS = ("local", "kubernetes")


class Launcher(Protocol):
    """Starts and watches the training process of a job (the child runs
    ``python -m training.jobs.runner --run-job ID --store S``)."""

    kind: str  # "local" | "kubernetes"

    def start(self, job: Job) -> str:
        """Start the job's training process; a handle (a pid, a Kubernetes Job name)."""
        ...

    def poll(self, handle: str) -> int | None:
        """Its exit status once it ended (0: ok; negative: killed by that signal)."""
        ...

    def stop(self, handle: str) -> None:
        """Stop it (gently, then for good); idempotent."""
        ...

    def alive(self, handle: str) -> bool:
        """Whether a handle from an earlier runner still runs (then it is followed)."""
        ...


def make_launcher(
    store: str | Path, kind: str | None = None, settings: RunnerSettings | None = None
) -> Launcher:
    """The launcher ``kind`` or the settings' ``KTL_JOB_RUNNER`` names (default local);
    ``settings``: the runner's, read once at its start (default: read now)."""
    settings = settings if settings is not None else RunnerSettings.from_env()
    kind = kind or settings.job_runner
    if kind == "local":
        return LocalLauncher(store, settings=settings)
    if kind == "kubernetes":
        try:
            from training.jobs import kube
        except ImportError as exc:
            raise ConfigError(
                f"KTL_JOB_RUNNER=kubernetes needs training.jobs.kube and the kubernetes client "
                f"({exc}): pip install kubernetes, or KTL_JOB_RUNNER=local"
            ) from exc
        launcher: Launcher = kube.KubernetesLauncher.from_settings(Path(store).resolve(), settings)
        return launcher
    raise ConfigError(
        f"KTL_JOB_RUNNER={kind!r}: a runner runs jobs locally or on Kubernetes "
        f"({', '.join(KINDS)}); none means no runner for this store"
    )


def _stderr(message: str) -> None:
    print(f"ktl job runner: {message}", file=sys.stderr, flush=True)


def describe_status(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        why = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the training process was killed by {name}{why}; see the log"
    return f"the training process ended with status {status}; see the log"


class Runner:
    """Claims the store's jobs one at a time and follows each to its end."""

    def __init__(
        self, store: str | Path, launcher: Launcher, *, poll: float = 1.0, log: Log = _stderr
    ):
        self.store = Path(store).resolve()
        self.queue = JobQueue(self.store)
        self.launcher = launcher
        self.poll = poll
        self.log = log
        self.stopping = False
        self._before: dict[str, dict[str, Any]] = {}

    def serve(self, once: bool = False) -> int:
        """Run jobs until stopped (``once``: until none is waiting); 0."""
        with self.queue.runner_lock():
            self.log(
                f"runs the training jobs of {self.store} ({self.launcher.kind}), pid {os.getpid()}"
            )
            # Handles of jobs a dead runner left running (claim() replaces them).
            self._before = {j.id: j.runner for j in self.queue.jobs() if j.state == "running"}
            while not self.stopping:
                job = self.queue.claim(self.launcher.kind)
                if job is not None:
                    self.run(job)
                elif once:
                    break
                else:
                    time.sleep(self.poll)
        self.log("stopped")
        return 0

    def stop(self, signum: int = 0, frame: object = None) -> None:
        """Stop after this poll (a signal handler); the job's process is stopped too."""
        self.stopping = True

    def run(self, job: Job) -> None:
        """Start (or keep following) the job's training process until the job ends, is
        cancelled, or the runner stops."""
        if job.cancel_requested:
            self._cancelled(job)
            return
        outcome = self.queue.outcome(job.id)
        if outcome is not None:  # its child ended before the last runner recorded it
            self._record(job, outcome)
            return
        handle = self._handle_from_before(job)
        try:
            if handle is None:
                resumed = " (resumed)" if job.attempts > 1 else ""
                self.queue.append_log(
                    job.id, f"Job runner: starting attempt {job.attempts}{resumed}"
                )
                handle = self.launcher.start(job)
                self.log(f"job {job.id} ({job.name}) started{resumed}: {handle}")
            job = self.queue.update(job.id, runner=self._runner_field(handle))
            self._follow(job, handle)
        except Exception as exc:  # this job fails; the runner goes on with the next
            self.log(f"job {job.id}: {traceback.format_exc().rstrip()}")
            if handle is not None:
                with contextlib.suppress(Exception):
                    self.launcher.stop(handle)
            message = str(exc) if isinstance(exc, KtlError) else repr(exc)
            with contextlib.suppress(KtlError):
                if not self.queue.get(job.id).done:
                    self.queue.finish(job.id, "failed", error=f"the job runner failed: {message}")

    def _handle_from_before(self, job: Job) -> str | None:
        before = self._before.pop(job.id, {})
        handle = before.get("k8s_job") or (str(before["pid"]) if before.get("pid") else None)
        if handle and before.get("kind") == self.launcher.kind and self.launcher.alive(handle):
            self.log(f"job {job.id} ({job.name}) still runs from before: following {handle}")
            return handle
        return None

    def _runner_field(self, handle: str) -> dict[str, Any]:
        local = self.launcher.kind == "local"
        return {
            "kind": self.launcher.kind,
            "pid": int(handle) if local else None,
            "k8s_job": None if local else handle,
        }

    def _follow(self, job: Job, handle: str) -> None:
        progress = JobProgress(ModelStore(self.store).job_dir(job.name))
        while True:
            status = self.launcher.poll(handle)
            job = self.queue.record_progress(job.id, progress.rows())
            if status is not None:
                self._ended(job, status)
                return
            if self.stopping:
                self.launcher.stop(handle)
                self.log(f"job {job.id} stopped with the runner; the next runner resumes it")
                return
            if job.cancel_requested:
                self.launcher.stop(handle)
                self._cancelled(job)
                return
            time.sleep(self.poll)

    def _ended(self, job: Job, status: int) -> None:
        job = self.queue.get(job.id)
        if job.done:
            self.log(f"job {job.id} ({job.name}) {job.state}")
            return
        outcome = self.queue.outcome(job.id)
        if outcome is not None:
            self._record(job, outcome)
            return
        version = published_version(self.store, job)
        if version is not None:  # killed after publishing, before recording it
            self.queue.finish(job.id, "succeeded", version=version)
            self.log(f"job {job.id} ({job.name}) succeeded: version {version}")
            return
        message = describe_status(status)
        self.queue.append_log(job.id, f"Job runner: {message}")
        forget_state(self.queue, job, self.store, self.log)
        self.queue.finish(job.id, "failed", error=message)
        self.log(f"job {job.id} ({job.name}) failed: {message}")

    def _record(self, job: Job, outcome: Outcome) -> None:
        """Record the outcome the job's training process reported, with its last epochs."""
        self.queue.record_progress(job.id, outcome.epochs)
        self.queue.finish(job.id, outcome.state, version=outcome.version, error=outcome.error)
        said = f"version {outcome.version}" if outcome.state == "succeeded" else outcome.error
        self.log(f"job {job.id} ({job.name}) {outcome.state}: {said}")

    def _cancelled(self, job: Job) -> None:
        job = self.queue.get(job.id)
        if job.done:  # it ended just before it was stopped
            self.log(f"job {job.id} ({job.name}) {job.state}")
            return
        outcome = self.queue.outcome(job.id)
        if outcome is not None:  # it ended, and said how, just before it was stopped
            self._record(job, outcome)
            return
        forget_state(self.queue, job, self.store, self.log)
        self.queue.append_log(job.id, "Job runner: cancelled; nothing was published")
        self.queue.finish(job.id, "cancelled")
        self.log(f"job {job.id} ({job.name}) cancelled")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.jobs.runner",
        description="Run the queued training jobs of a model store, one at a time, each in "
        "a child process (KTL_JOB_RUNNER=local, the default) or a Kubernetes Job "
        "(KTL_JOB_RUNNER=kubernetes). A job left running by a runner that stopped is "
        "resumed first, from its last finished epoch. SIGTERM or SIGINT stop the runner "
        "and its job's training; the job resumes when a runner starts again. `ktl serve` "
        "starts one beside gunicorn when training is on (KTL_TRAINING=open or "
        "KTL_TRAIN_KEYS).",
        epilog="Local training processes run niced by KTL_JOB_NICE (default 10) with "
        "KTL_JOB_THREADS TensorFlow threads (default half the CPUs); each writes the "
        "job's log.txt in <store>/.queue/<id>/. `ktl jobs` lists and follows the jobs.",
    )
    parser.add_argument("--store", required=True, help="the model store whose jobs run")
    parser.add_argument(
        "--once", action="store_true", help="run the waiting jobs, then exit instead of waiting"
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between looks at the queue and the running job (default 1)",
    )
    parser.add_argument(
        "--parent",
        type=int,
        metavar="PID",
        help="die with this process (gunicorn's master passes its pid)",
    )
    parser.add_argument("--run-job", metavar="ID", help=argparse.SUPPRESS)  # the child
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.parent is not None:
        from training.jobs.runner_local import tie_to_parent

        tie_to_parent(args.parent)
    if args.run_job:
        from training.jobs.runner_child import run_child

        return run_child(args.run_job, args.store)
    if not args.poll > 0:
        _stderr("--poll must be more than 0 seconds")
        return 2
    try:
        settings = RunnerSettings.from_env()  # once, at the start: a bad value stops it
        runner = Runner(args.store, make_launcher(args.store, settings=settings), poll=args.poll)
        signal.signal(signal.SIGTERM, runner.stop)
        signal.signal(signal.SIGINT, runner.stop)
        return runner.serve(once=args.once)
    except KtlError as exc:
        _stderr(f"error: {exc}")
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
