"""One queued job's training process (``python -m training.jobs.runner --run-job ID
--store S``), and what it shares with the runner: the rules for the job's
resumable state.

The child does the whole job: it builds the ``TrainConfig`` from the job's options,
its data and the store, runs ``training.job.run_job`` and reports how it ended
(``models.jobqueue.jobs.Outcome``: ``succeeded`` with the published version, or ``failed``
with the message, and its last epochs) for the runner to record. It never writes
the job's record (``job.json``): the runner is its one writer, and copies the job's
epochs from the store's progress records while it trains. Its log
lines go to stderr; when stderr is not already the job's ``log.txt`` (the local
runner points it there, a Kubernetes pod's stderr is its pod log) each line is also
appended to ``log.txt``, so every line is there exactly once.

The state of a job of NAME lives where ``ktl train`` keeps it, ``<store>/.jobs/NAME``,
and a job resumes only state it made itself. Before it trains, the child writes the
marker ``<store>/.queue/<id>/state-owned``; from then on that state is the job's:

- first attempt: state it did not make (an interrupted ``ktl train`` of the same
  name, say) is never resumed nor discarded: the job fails at once, saying how to
  continue or discard it, or to use another name. A user's interrupted job is
  worth more than a queued one;
- a later attempt (the runner or the service restarted) resumes with the same rules
  as ``ktl train --resume`` when the job owns state (otherwise it is a first
  attempt), unless the job already published its version before the interruption:
  then that version is its outcome and nothing trains again;
- a job that fails or is cancelled leaves no state (nothing can resume a finished
  job, and it would block the next job of that name); a runner that stops (not a
  crash, not a cancel) leaves it for the next runner to resume.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from models import quiet
from models.errors import ConfigError, KtlError
from models.jobqueue.jobs import Job, JobQueue, Outcome, check_options
from models.metadata import BundleError
from models.store import ModelStore
from models.store.progress import JobProgress
from models.timestamps import parse as parse_time

if TYPE_CHECKING:
    from training.config import TrainConfig

Log = Callable[[str], None]
EXIT_INTERRUPTED = 130


# --- whose state it is ----------------------------------------------------------------


def forget_state(queue: JobQueue, job: Job, store: str | Path, log: Log) -> bool:
    """Remove the job's own state and its lock file (for a failed or cancelled job),
    under that lock; False when the state is not the job's or another process holds it."""
    if not queue.owns_state(job.id):
        return False
    root, lock_path = ModelStore(store).job_dir(job.name), ModelStore(store).job_lock_path(job.name)
    if not root.exists() and not lock_path.exists():
        return True
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"Left {root}: another process holds its lock")
            return False
        shutil.rmtree(root, ignore_errors=True)
        lock_path.unlink(missing_ok=True)
    return True


def published_version(store: str | Path, job: Job) -> int | None:
    """The version this job published, if it did (the newest of its name trained on the
    job's data since the job started): a job killed between publishing and recording
    it is not trained again."""
    if not job.started:
        return None
    started = parse_time(job.started)
    model_store = ModelStore(store)
    for version in reversed(model_store.versions(job.name)):
        try:
            metadata = model_store.read_metadata(job.name, version)
            created = parse_time(metadata.created_at or "")
        except (BundleError, ValueError):
            continue
        if created < started:
            return None
        if metadata.training.get("data") == job.data:
            return version
    return None


def _check_unlocked(lock_path: Path, name: str) -> None:
    if not lock_path.exists():
        return
    with open(lock_path) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another training job for {name!r} is running on this store (a `ktl train`?); "
                "submit this one again when it has finished, or under another name"
            ) from None


def _check_not_waiting(root: Path, name: str) -> None:
    """``ConfigError`` when an interrupted job that is not this one waits under ``name``."""
    from training.jobs.state import JobState, pixels_file

    state = JobState(root, pixels_file(root, None))
    done = state.progress() if state.read("config.json") is not None else None
    if done is not None:
        raise ConfigError(
            f"an interrupted training job for {name!r} that is not this one is waiting in the "
            f"store ({done}): continue it with `ktl train --resume`, discard it with "
            f"`ktl train --restart` or by deleting {root}, or submit this job under another name"
        )


def job_config(queue: JobQueue, job: Job, store: str | Path) -> TrainConfig:
    """The job's ``TrainConfig``: its options, data and store, resumed when it owns
    state from an earlier attempt; the state is the job's once this returns."""
    from training.config import build_config

    options = check_options(job.options)
    resume = job.attempts > 1 and queue.owns_state(job.id)
    # A job reads only files inside its folder: a link in a KTL_DATA_ROOT folder that
    # leads out of it (to /etc/passwd, another dataset) is skipped, not followed.
    flags = {**options, "data": job.data, "store": str(store), "resume": resume}
    flags["confine_to_data"] = True
    config = build_config({}, flags, via="http")
    model_store = ModelStore(store)
    _check_unlocked(model_store.job_lock_path(config.name), config.name)
    if not resume:
        _check_not_waiting(model_store.job_dir(config.name), config.name)
    queue.mark_state_owned(job.id)
    return config


# --- the child process -----------------------------------------------------------------


class JobLog:
    """The child's log: lines to stderr and, unless stderr is the job's log file
    already, to that file. Each line also notes the job's epochs from its progress
    records (``rows``), so its outcome has the last of them although the job removes
    its state when it publishes."""

    def __init__(self, queue: JobQueue, job: Job, store: str | Path):
        self.queue, self.job_id = queue, job.id
        path = queue.log_path(job.id)
        try:
            self.redirected = os.path.samestat(os.fstat(sys.stderr.fileno()), path.stat())
        except (OSError, ValueError):
            self.redirected = False
        self.progress = JobProgress(ModelStore(store).job_dir(job.name))
        self.rows: list[dict] = []

    def __call__(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        if not self.redirected:
            self.queue.append_log(self.job_id, line)
        self.rows = self.progress.rows() or self.rows

    def report(self, state: str, *, version: int | None = None, error: str | None = None) -> None:
        """Report how the job ended, for the runner to record."""
        rows = self.progress.rows() or self.rows
        outcome = Outcome(state, version=version, error=error, epochs=rows)
        self.queue.report_outcome(self.job_id, outcome)


def run_child(job_id: str, store: str | Path) -> int:
    """Train the job ``job_id`` and report how it ended: 0 succeeded, 1 failed, 130
    interrupted (SIGTERM: no outcome; the job stays running, for the next runner to
    resume)."""
    quiet.install()  # TensorFlow's start-up lines stay out of the job's log
    signal.signal(signal.SIGTERM, _interrupt)
    queue = JobQueue(store)
    job = queue.get(job_id)
    log = JobLog(queue, job, store)
    if job.done:
        log(f"Job {job_id} is {job.state} already; nothing to do")
        return 0
    try:
        return _train(queue, job, store, log)
    except KeyboardInterrupt:
        log(
            f"Job {job_id} interrupted; it resumes from its last finished epoch when a runner "
            "starts it again"
        )
        return EXIT_INTERRUPTED
    except Exception as exc:
        if not isinstance(exc, KtlError):  # a bug: its traceback helps
            log(traceback.format_exc().rstrip())
        message = str(exc) if isinstance(exc, KtlError) else repr(exc)
        log(f"Error: {message}")
        log.report("failed", error=message)
        forget_state(queue, job, store, log)
        return 1


def _train(queue: JobQueue, job: Job, store: str | Path, log: JobLog) -> int:
    attempt = f" (attempt {job.attempts})" if job.attempts > 1 else ""
    log(f"Job {job.id}: training {job.name!r} on {job.data}{attempt}")
    if job.attempts > 1 and (version := published_version(store, job)) is not None:
        log(f"Job {job.id} had published {job.name} version {version} before the interruption")
        forget_state(queue, job, store, log)
        log.report("succeeded", version=version)
        return 0
    config = job_config(queue, job, store)
    from training.job import run_job

    result = run_job(config, log)
    log.report("succeeded", version=result.version)
    log(f"Job {job.id} succeeded: published {job.name} version {result.version}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
