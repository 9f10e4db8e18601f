"""Where everything lives in a model store (docs/training.md shows the layout):

- ``<store>/<name>/<version>/`` a published bundle, with its ``metadata.json``;
- ``<store>/<name>/labels.json`` and ``.labels.lock`` its labels (``models.store.labels``);
- ``<store>/.staging/`` bundles being written, and versions being deleted;
- ``<store>/.jobs/<name>/`` an unfinished ``ktl train`` job's state (``<name>.worker<i>``
  for the other workers of a multi-worker job), locked by ``<store>/.jobs/<name>.lock``;
  its progress records are in it (``models.store.progress``);
- ``<store>/.queue/<id>/`` a queued training job: ``job.json`` (written by the queue's
  clients and the runner, never by the job's training process), ``log.txt``, the uploaded
  ``dataset/``, the ``state-owned`` marker and ``outcome.json`` (how the training process
  ended, its report to the runner); ``.queue/.lock`` guards the records and
  ``.queue/.runner.lock`` is held by the one runner of the store.

Only this package spells these names; every other module asks ``ModelStore`` or
``QueuePaths`` for a path (tests/models/test_store_paths.py checks it).
"""

from __future__ import annotations

import re
from pathlib import Path

from models.errors import ModelNotFound

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,17}")
STAGING_DIR = ".staging"
JOBS_DIR = ".jobs"
QUEUE_DIR = ".queue"
# In a queued job's folder.
JOB_RECORD = "job.json"
LOG_FILE = "log.txt"
DATASET_DIR = "dataset"
# Written by training.jobs.runner_child when the job's training state (<store>/.jobs/<name>)
# is its own, so only that is resumed.
STATE_OWNED = "state-owned"
# In a version of an object-storage store (models.store.remote): the conditional create
# that claims its number, first, and the marker that publishes it, last.
CLAIM_FILE = ".claim"
MARKER_FILE = ".published"
# Written once by training.jobs.runner_child when the job's training ends; read by the runner.
OUTCOME_FILE = "outcome.json"


class InvalidName(ModelNotFound):
    """A model name that does not match ``[a-z0-9][a-z0-9_-]{0,63}``: no model can
    have it (over HTTP a 404, like any unknown model)."""


def validate_name(name: str) -> str:
    """``name`` if it is a valid model name; checked before any path is built from it."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        lower = str(name).lower()
        hint = f" (did you mean {lower!r}?)" if NAME_PATTERN.fullmatch(lower) else ""
        raise InvalidName(
            f"Invalid model name {str(name)[:80]!r}{hint}: use 1-64 characters, lower-case "
            "letters, digits, '-' and '_', starting with a letter or digit"
        )
    return name


def job_lock_for(job_dir: Path) -> Path:
    """The lock file of the job whose state is in ``job_dir`` (beside it, so it outlives
    the folder's removal): one job per name and store at a time."""
    return job_dir.with_name(f"{job_dir.name}.lock")


class QueuePaths:
    """The folders and files of a store's training job queue. Job ids are checked by
    the caller (``models.jobqueue.jobs.JobQueue.folder``) before they reach here."""

    def __init__(self, store_root: str | Path):
        from models.store.location import UnsupportedStore, is_remote

        if is_remote(store_root):
            raise UnsupportedStore(
                f"The training job queue cannot live in {store_root}: it stays on a local or "
                "shared disk (docs/scaling-out.md); run ktl train --store URL to publish there"
            )
        self.root = Path(store_root) / QUEUE_DIR

    @property
    def lock(self) -> Path:
        """Held while a job record is read, changed and written."""
        return self.root / ".lock"

    @property
    def runner_lock(self) -> Path:
        """Held by the one runner of the store."""
        return self.root / ".runner.lock"

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def record(self, job_id: str) -> Path:
        return self.folder(job_id) / JOB_RECORD

    def log(self, job_id: str) -> Path:
        return self.folder(job_id) / LOG_FILE

    def dataset(self, job_id: str) -> Path:
        return self.folder(job_id) / DATASET_DIR

    def state_owned(self, job_id: str) -> Path:
        return self.folder(job_id) / STATE_OWNED

    def outcome(self, job_id: str) -> Path:
        return self.folder(job_id) / OUTCOME_FILE
