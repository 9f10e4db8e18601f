"""The training job queue, kept in the store: ``<store>/.queue/<id>/job.json``.

The service submits jobs and reads them; one runner process per store
(``training.jobs.runner``) claims them and runs each in a child process. The runner is the
only writer of a claimed job's record: the training process reports how it ended in
an ``Outcome`` (``report_outcome``) and its epochs through the store's progress
records (``models.store.progress``), and the runner copies both into ``job.json``.
The queue's clients only submit and cancel.
Every change to a job record is a read-modify-write under one lock file, and
each record is replaced atomically, so a killed writer leaves the old record
or the new one, never half of one. The queue survives restarts: a job left
``running`` by a runner that died is claimed again first, and resumed. Where its
folders and files are is the store's (``models.store.layout.QueuePaths``), and every
record goes through the store's atomic writer.

This module imports no Flask and no training code: the service, the runner and
``ktl jobs`` all read the queue through it. Its errors carry data (which job, how many
are waiting); the service and the command line word them for HTTP or a shell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.errors import (
    ConfigError,
    NotFound,
    OperationalError,
    Unavailable,
    UserError,
    did_you_mean,
)
from models.option_checks import parse, spell
from models.options import HTTP_WEIGHTS, http_options
from models.store import QueuePaths, write_json_atomically
from models.store.layout import DATASET_DIR, LOG_FILE, QUEUE_DIR  # noqa: F401 (as before)
from models.timestamps import utc_now

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


class UnknownJob(NotFound):
    code = "job_not_found"

    def __init__(self, message: str, job_id: str):
        super().__init__(message)
        self.job_id = job_id


class QueueFull(Unavailable):
    """``waiting`` jobs are queued or running, the ``limit``; a client may try again
    once one has finished (the service says when)."""

    code = "queue_full"

    def __init__(self, waiting: int, limit: int):
        super().__init__(
            f"{waiting} training jobs are queued or running, the most this service takes "
            f"(KTL_JOB_QUEUE_SIZE={limit}); try again when one has finished"
        )
        self.waiting, self.limit = waiting, limit


class JobFinished(UserError):
    status = 409
    code = "job_finished"


class InvalidOptions(ConfigError):
    code = "invalid_options"


class RunnerBusy(OperationalError):
    code = "runner_busy"


def check_options(options: Any) -> dict[str, Any]:
    """The options of a job from outside (HTTP), if each is a training option HTTP may
    set (``models.options``: never a path of the server) and all of them pass the
    checks ``ktl train`` makes; ``InvalidOptions`` names the first that does not, as
    ``options.NAME``."""
    if not isinstance(options, Mapping):
        raise InvalidOptions('options must be a JSON object, e.g. {"name": "flowers"}')
    options = {str(key).replace("-", "_"): value for key, value in options.items()}
    allowed = http_options()
    unknown = sorted(options.keys() - set(allowed))
    if unknown:
        hint = did_you_mean(unknown[0], allowed)
        raise InvalidOptions(
            f"options {unknown} cannot be set over HTTP{hint}; allowed: {', '.join(allowed)}"
        )
    if "name" not in options:
        raise InvalidOptions('options need "name", the model to publish')
    weights = options.get("weights")
    if isinstance(weights, str) and not re.fullmatch(HTTP_WEIGHTS, weights):
        raise InvalidOptions(
            f"options.weights = {weights!r}: over HTTP, weights are imagenet, none or "
            "model:NAME[:VERSION|LABEL] of this store (no files)"
        )
    given = {key: value for key, value in options.items() if value is not None}
    try:  # the job's folder is the server's: any placeholder passes the check
        parse({**given, "data": "."}, functools.partial(spell, via="http"))
    except ConfigError as exc:
        raise InvalidOptions(exc.message) from None
    return options


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


@dataclass(frozen=True)
class Outcome:
    """How a job's training process ended, its one report to the runner
    (``outcome.json`` beside the record): ``succeeded`` with the version it published,
    or ``failed`` with the message; ``epochs`` are its last progress rows (its state,
    and so its progress records, go when it publishes)."""

    state: str
    version: int | None = None
    error: str | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert self.state in ("succeeded", "failed"), self.state


class JobQueue:
    """The jobs of one store."""

    def __init__(self, store_root: str | Path):
        self.paths = QueuePaths(store_root)
        self.root = self.paths.root

    def reserve(self) -> tuple[str, Path]:
        """A new job id and its empty folder; listed only once ``submit`` records it."""
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            job_id = f"{stamp}-{secrets.token_hex(3)}"
            with contextlib.suppress(FileExistsError):
                self.paths.folder(job_id).mkdir()
                return job_id, self.paths.folder(job_id)

    def folder(self, job_id: str) -> Path:
        return self.paths.folder(self._checked(job_id))

    @staticmethod
    def _checked(job_id: str) -> str:
        """``job_id`` if it is one (checked before any path is built from it)."""
        if not isinstance(job_id, str) or not _ID.fullmatch(job_id):
            raise UnknownJob(
                f"No job {str(job_id)[:40]!r}: job ids look like 20261202-120000-a1b2c3",
                str(job_id)[:40],
            )
        return job_id

    def log_path(self, job_id: str) -> Path:
        """The job's ``log.txt``."""
        return self.paths.log(self._checked(job_id))

    def dataset_dir(self, job_id: str) -> Path:
        """Where an uploaded dataset of the job is extracted."""
        return self.paths.dataset(self._checked(job_id))

    def mark_state_owned(self, job_id: str) -> None:
        """Record that the training state of the job's name is this job's own."""
        self.paths.state_owned(self._checked(job_id)).touch()

    def owns_state(self, job_id: str) -> bool:
        """Whether ``mark_state_owned`` was called for the job."""
        return self.paths.state_owned(self._checked(job_id)).is_file()

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
                raise QueueFull(waiting, limit)
            job = Job(job_id, options["name"], dict(options), str(data), source)
            self._write(job)
            return job

    def report_outcome(self, job_id: str, outcome: Outcome) -> None:
        """For the job's training process: how it ended, for the runner to record."""
        path = self.paths.outcome(self._checked(job_id))
        write_json_atomically(path, dataclasses.asdict(outcome), indent=1)

    def outcome(self, job_id: str) -> Outcome | None:
        """The outcome the job's training process reported, None before it did."""
        try:
            return Outcome(**json.loads(self.paths.outcome(self._checked(job_id)).read_text()))
        except (OSError, ValueError, TypeError, AssertionError):
            return None

    def record_progress(self, job_id: str, rows: list[dict[str, Any]]) -> Job:
        """For the runner: the job's finished epochs (``JobProgress.rows``), its phase and
        epoch from the last; the record is written only when they changed."""
        job = self.get(job_id)
        if not rows or rows == job.epochs:
            return job
        return self.update(job_id, epochs=rows, phase=rows[-1]["phase"], epoch=rows[-1]["epoch"])

    def discard(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def get(self, job_id: str) -> Job:
        job = self._read(self._checked(job_id))
        if job is None:
            raise UnknownJob(f"No job {job_id!r} in this store", job_id)
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
            shutil.rmtree(self.dataset_dir(job.id), ignore_errors=True)
        return dataclasses.replace(job, state=state, finished=utc_now(), **changes)

    def log_tail(self, job_id: str, lines: int = 20) -> list[str]:
        try:
            text = self.log_path(job_id).read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    def append_log(self, job_id: str, line: str) -> None:
        with open(self.log_path(job_id), "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")

    @contextlib.contextmanager
    def runner_lock(self) -> Iterator[None]:
        """Held by the one runner of this store; ``RunnerBusy`` when another holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.paths.runner_lock, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunnerBusy(
                    f"Another job runner is already running for the store {self.root.parent}"
                ) from None
            yield

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.paths.lock, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _each(self) -> Iterator[Job]:
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if _ID.fullmatch(folder.name):
                job = self._read(folder.name)
                if job is not None:
                    yield job

    def _read(self, job_id: str) -> Job | None:
        try:
            return Job.from_dict(json.loads(self.paths.record(job_id).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write(self, job: Job) -> None:
        write_json_atomically(self.paths.record(self._checked(job.id)), job.to_dict(), indent=1)
