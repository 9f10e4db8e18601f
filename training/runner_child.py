"""One queued job's training process (``python -m training.runner --run-job ID
--store S``), and what it shares with the runner: the job's progress read from its
resumable state, and the rules for that state.

The child does the whole job: it builds the ``TrainConfig`` from the job's options,
its data and the store, runs ``training.job.run_job`` and records the outcome
(``succeeded`` with the published version, or ``failed`` with the message). Its log
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

import contextlib
import fcntl
import math
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models import quiet
from models.errors import ConfigError, KtlError
from models.jobs import Job, JobQueue, check_options
from models.metadata import BundleError
from models.store import ModelStore
from models.store.progress import read_epochs
from models.timestamps import parse as parse_time

if TYPE_CHECKING:
    from training.config import TrainConfig

Log = Callable[[str], None]
PHASE_ORDER = ("scratch", "head", "fine_tune")  # how training.phases orders them
EXIT_INTERRUPTED = 130


# --- the job's progress -------------------------------------------------------------


def epoch_rows(root: Path) -> list[dict[str, Any]]:
    """Every finished epoch in ``root``'s ``epochs_<phase>.json``, the phases in the
    order a job trains them; numbers that are not finite become None (JSON has none)."""
    found = read_epochs(root)
    order = sorted(found, key=lambda p: (p not in PHASE_ORDER, _index(p), p))
    return [
        {"phase": phase, "epoch": i + 1, **{k: _finite(v) for k, v in row.items()}}
        for phase in order
        for i, row in enumerate(found[phase])
        if isinstance(row, dict)
    ]


def _index(phase: str) -> int:
    return PHASE_ORDER.index(phase) if phase in PHASE_ORDER else len(PHASE_ORDER)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def copy_progress(queue: JobQueue, job: Job, root: Path) -> Job:
    """The job's record with the epochs its state holds now (written only when they
    changed; no rows, as once a job has published and removed its state, change nothing)."""
    rows = epoch_rows(root)
    if not rows or rows == job.epochs:
        return job
    return queue.update(job.id, epochs=rows, phase=rows[-1]["phase"], epoch=rows[-1]["epoch"])


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
    from training.state import JobState, pixels_file

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


def job_log(queue: JobQueue, job: Job, store: str | Path) -> Log:
    """Lines to stderr and, unless stderr is the job's log file already, to that file;
    each line also copies the job's progress into its record, so a job's last epochs
    are there before it publishes and removes its state."""
    path = queue.log_path(job.id)
    try:
        redirected = os.path.samestat(os.fstat(sys.stderr.fileno()), path.stat())
    except (OSError, ValueError):
        redirected = False
    root = ModelStore(store).job_dir(job.name)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        if not redirected:
            queue.append_log(job.id, line)
        with contextlib.suppress(KtlError, OSError, ValueError):
            copy_progress(queue, queue.get(job.id), root)

    return log


def run_child(job_id: str, store: str | Path) -> int:
    """Train the job ``job_id`` and record how it ended: 0 succeeded, 1 failed, 130
    interrupted (SIGTERM: the job stays running, for the next runner to resume)."""
    quiet.install()  # TensorFlow's start-up lines stay out of the job's log
    signal.signal(signal.SIGTERM, _interrupt)
    queue = JobQueue(store)
    job = queue.get(job_id)
    log = job_log(queue, job, store)
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
        forget_state(queue, job, store, log)
        queue.finish(job_id, "failed", error=message)
        return 1


def _train(queue: JobQueue, job: Job, store: str | Path, log: Log) -> int:
    attempt = f" (attempt {job.attempts})" if job.attempts > 1 else ""
    log(f"Job {job.id}: training {job.name!r} on {job.data}{attempt}")
    if job.attempts > 1 and (version := published_version(store, job)) is not None:
        log(f"Job {job.id} had published {job.name} version {version} before the interruption")
        forget_state(queue, job, store, log)
        queue.finish(job.id, "succeeded", version=version)
        return 0
    config = job_config(queue, job, store)
    from training.job import run_job

    summary = run_job(config, log)
    queue.finish(job.id, "succeeded", version=summary["version"])
    log(f"Job {job.id} succeeded: published {job.name} version {summary['version']}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
