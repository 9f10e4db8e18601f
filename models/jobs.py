"""The training job queue, kept in the store: ``<store>/.queue/<id>/job.json``.

The service submits jobs (``POST /v1/jobs``) and reads them; one runner process
per store (``training.runner``) claims them and runs each in a child process.
Every change to a job record is a read-modify-write under one lock file, and
each record is replaced atomically, so a killed writer leaves the old record
or the new one, never half of one. The queue survives restarts: a job left
``running`` by a runner that died is claimed again first, and resumed.

This module imports no Flask and no training code: the service, the runner and
``ktl jobs`` all read the queue through it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.errors import ConfigError, NotFound, OperationalError, Unavailable, UserError
from models.store import validate_name
from models.timestamps import utc_now

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
QUEUE_DIR = ".queue"
DATASET_DIR = "dataset"
LOG_FILE = "log.txt"
# Also in a job's folder: "state-owned", written by training.runner_child when the
# job's training state (<store>/.jobs/<name>) is its own, so only that is resumed.
_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
_RETRY_AFTER_S = 60

# Training settings a job may take over HTTP, by kind (the names of the TOML job
# file). Nothing that names a path on the server: not the store, a cache or a log
# folder, a weights file, --exclude/--relabel/--ood files, --resume or a strategy.
# tests/models/test_jobs.py checks the kinds against training.config.TrainConfig.
ALLOWED_OPTIONS: dict[str, str] = {
    "name": "str", "backbone": "str", "weights": "str", "image_size": "int",
    "batch_size": "int", "epochs": "int", "fine_tune_epochs": "int", "min_steps": "int",
    "unfreeze_from": "str", "lr": "float|auto", "fine_tune_lr": "float|auto",
    "schedule": "str", "layer_decay": "float", "label_smoothing": "float", "mixup": "float",
    "cutmix": "float", "randaugment": "bool", "tta": "bool", "val_split": "float",
    "test_split": "float", "seed": "int", "augment": "bool", "dropout": "float",
    "pooling": "str", "patience": "int", "calibrate": "bool", "min_confidence": "float|auto",
    "target_accuracy": "float", "promote": "bool", "promote_if_better": "bool", "int8": "bool",
}  # fmt: skip
# The range each number may take over HTTP (inclusive; finer rules, such as lr > 0, are
# the job's): wide enough for any real run, narrow enough that none asks for years of
# training or a learning rate that can only end in NaN.
OPTION_RANGES: dict[str, tuple[float, float]] = {
    "image_size": (32, 1024), "batch_size": (1, 4096), "epochs": (1, 10_000),
    "fine_tune_epochs": (0, 10_000), "min_steps": (0, 10_000_000), "lr": (0, 10),
    "fine_tune_lr": (0, 10), "layer_decay": (0, 1), "label_smoothing": (0, 1),
    "mixup": (0, 100), "cutmix": (0, 100), "val_split": (0, 1), "test_split": (0, 1),
    "seed": (0, 2**32 - 1), "dropout": (0, 1), "patience": (1, 10_000),
    "min_confidence": (0, 1), "target_accuracy": (0, 1),
}  # fmt: skip
_WEIGHTS = re.compile(r"imagenet|none|model:[a-z0-9][a-z0-9_-]{0,63}(:[A-Za-z0-9_-]{1,64})?")


class UnknownJob(NotFound):
    code = "job_not_found"


class QueueFull(Unavailable):
    code = "queue_full"


class JobFinished(UserError):
    status = 409
    code = "job_finished"


class InvalidOptions(ConfigError):
    code = "invalid_options"


class RunnerBusy(OperationalError):
    code = "runner_busy"


def check_options(options: Any) -> dict[str, Any]:
    """The options of a job from outside (HTTP), if every key is an allowed training
    setting of the right kind; ``InvalidOptions`` names the first that is not. Ranges
    are the job's to check: it fails at once with the same message ``ktl train`` gives."""
    if not isinstance(options, Mapping):
        raise InvalidOptions('options must be a JSON object, e.g. {"name": "flowers"}')
    options = {str(key).replace("-", "_"): value for key, value in options.items()}
    unknown = sorted(options.keys() - ALLOWED_OPTIONS.keys())
    if unknown:
        raise InvalidOptions(
            f"options {unknown} cannot be set over HTTP; allowed: {', '.join(ALLOWED_OPTIONS)}"
        )
    if "name" not in options:
        raise InvalidOptions('options need "name", the model to publish')
    try:
        validate_name(options["name"])
    except NotFound as exc:  # a bad name in a path is "no such model"; here, a bad option
        raise InvalidOptions(f"option name: {exc.message}") from None
    for key, value in options.items():
        if value is not None and not _is_kind(value, ALLOWED_OPTIONS[key]):
            raise InvalidOptions(f"option {key}={value!r}: expected {ALLOWED_OPTIONS[key]}")
        _check_range(key, value)
    weights = options.get("weights")
    if weights is not None and not _WEIGHTS.fullmatch(weights):
        raise InvalidOptions(
            f"option weights={weights!r}: over HTTP, weights are imagenet, none or "
            "model:NAME[:VERSION|LABEL] of this store (no files)"
        )
    return options


def _check_range(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidOptions(f"option {key}={value!r}: must be a finite number")
    low, high = OPTION_RANGES[key]
    if not low <= value <= high:
        raise InvalidOptions(f"option {key}={value!r}: must be from {low:,} to {high:,}")


def _is_kind(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "bool"
    if isinstance(value, str):
        return kind == "str" or (kind.endswith("|auto") and value == "auto")
    if isinstance(value, int):
        return kind in ("int", "float", "float|auto")
    return isinstance(value, float) and kind.startswith("float")


@dataclass
class Job:
    """One training job's record (``job.json``)."""

    id: str
    name: str
    options: dict[str, Any]
    data: str  # the folder it trains on
    source: str  # "upload" or "data_root"
    state: str = "queued"
    created: str = field(default_factory=utc_now)
    queued_ns: int = field(default_factory=time.time_ns)  # orders jobs of the same second
    started: str | None = None
    finished: str | None = None
    phase: str | None = None
    epoch: int | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    version: int | None = None
    error: str | None = None
    cancel_requested: bool = False
    attempts: int = 0
    runner: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        names = {spec.name for spec in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


class JobQueue:
    """The jobs of one store."""

    def __init__(self, store_root: str | Path):
        self.root = Path(store_root) / QUEUE_DIR

    def reserve(self) -> tuple[str, Path]:
        """A new job id and its empty folder; listed only once ``submit`` records it."""
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            job_id = f"{stamp}-{secrets.token_hex(3)}"
            with contextlib.suppress(FileExistsError):
                (self.root / job_id).mkdir()
                return job_id, self.root / job_id

    def folder(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not _ID.fullmatch(job_id):
            raise UnknownJob(
                f"No job {str(job_id)[:40]!r}: job ids look like 20261202-120000-a1b2c3"
            )
        return self.root / job_id

    def submit(
        self,
        job_id: str,
        *,
        options: dict[str, Any],
        data: str | Path,
        source: str,
        limit: int,
    ) -> Job:
        """Queue the reserved job; ``QueueFull`` (its folder removed) when ``limit`` jobs
        are already queued or running."""
        with self._locked():
            waiting = sum(not job.done for job in self._each())
            if waiting >= limit:
                self.discard(job_id)
                raise QueueFull(
                    f"{waiting} training jobs are queued or running, the most this service "
                    f"takes (KTL_JOB_QUEUE_SIZE={limit}); try again when one has finished",
                    headers={"Retry-After": str(_RETRY_AFTER_S)},
                )
            job = Job(job_id, options["name"], dict(options), str(data), source)
            self._write(job)
            return job

    def discard(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def get(self, job_id: str) -> Job:
        job = self._read(self.folder(job_id))
        if job is None:
            raise UnknownJob(f"No job {job_id!r} in this store; GET /v1/jobs lists them")
        return job

    def jobs(self) -> list[Job]:
        """Every job, newest first."""
        return sorted(self._each(), key=lambda job: job.queued_ns, reverse=True)

    def update(self, job_id: str, **changes: Any) -> Job:
        with self._locked():
            job = dataclasses.replace(self.get(job_id), **changes)
            self._write(job)
            return job

    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one is asked to stop (the runner
        stops it and records ``cancelled``). ``JobFinished`` for a finished job."""
        with self._locked():
            job = self.get(job_id)
            if job.done:
                raise JobFinished(f"Job {job_id} has already {job.state}; nothing to cancel")
            if job.state == "queued":
                job = self._finished(job, "cancelled")
            else:
                job = dataclasses.replace(job, cancel_requested=True)
            self._write(job)
            return job

    def claim(self, kind: str) -> Job | None:
        """For the runner: a job a dead runner left running (to resume), else the oldest
        queued one; marked running, its attempts counted."""
        with self._locked():
            jobs = sorted(self._each(), key=lambda job: job.queued_ns)
            waiting = [job for job in jobs if job.state == "running"]
            waiting += [job for job in jobs if job.state == "queued"]
            if not waiting:
                return None
            job = dataclasses.replace(
                waiting[0],
                state="running",
                started=waiting[0].started or utc_now(),
                attempts=waiting[0].attempts + 1,
                runner={"kind": kind},
            )
            self._write(job)
            return job

    def finish(
        self, job_id: str, state: str, *, version: int | None = None, error: str | None = None
    ) -> Job:
        """Record the end of a job; its uploaded dataset goes."""
        assert state in TERMINAL, state
        with self._locked():
            job = self._finished(self.get(job_id), state, version=version, error=error)
            self._write(job)
        return job

    def _finished(self, job: Job, state: str, **changes: Any) -> Job:
        if job.source == "upload":
            shutil.rmtree(self.folder(job.id) / DATASET_DIR, ignore_errors=True)
        return dataclasses.replace(job, state=state, finished=utc_now(), **changes)

    def log_tail(self, job_id: str, lines: int = 20) -> list[str]:
        try:
            text = (self.folder(job_id) / LOG_FILE).read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    def append_log(self, job_id: str, line: str) -> None:
        with open(self.folder(job_id) / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")

    @contextlib.contextmanager
    def runner_lock(self) -> Iterator[None]:
        """Held by the one runner of this store; ``RunnerBusy`` when another holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".runner.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunnerBusy(
                    f"Another job runner is already running for the store {self.root.parent}"
                ) from None
            yield

    def wait_changed(self, job_id: str, since: float, timeout: float) -> float:
        """Block until the job's record changes after ``since`` (its mtime) or ``timeout``
        passes; returns the record's mtime."""
        deadline = time.monotonic() + timeout
        path = self.folder(job_id) / "job.json"
        while True:
            with contextlib.suppress(OSError):
                mtime = path.stat().st_mtime
                if mtime != since or time.monotonic() >= deadline:
                    return mtime
            if time.monotonic() >= deadline:
                return since
            time.sleep(0.25)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _each(self) -> Iterator[Job]:
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if _ID.fullmatch(folder.name):
                job = self._read(folder)
                if job is not None:
                    yield job

    @staticmethod
    def _read(folder: Path) -> Job | None:
        try:
            return Job.from_dict(json.loads((folder / "job.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write(self, job: Job) -> None:
        folder = self.folder(job.id)
        tmp = folder / ".job.json.tmp"
        tmp.write_text(json.dumps(job.to_dict(), indent=1))
        os.replace(tmp, folder / "job.json")
