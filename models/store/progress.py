"""A training job's progress records, in its state folder (``ModelStore.job_dir``):
``progress.json`` (the phases it finished) and one ``epochs_<phase>.json`` per phase
(the rows of its finished epochs). The job writes them (``training.state.JobState``,
through the atomic writer); the runner and ``ktl jobs`` read them here."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress.json"
_EPOCHS_PREFIX = "epochs_"


def epochs_file(phase: str) -> str:
    """The name of the record of ``phase``'s finished epochs in a job's state folder."""
    return f"{_EPOCHS_PREFIX}{phase}.json"


def epoch_files(job_dir: Path) -> dict[str, Path]:
    """Each phase with an epochs record in ``job_dir``, by phase name, sorted by name."""
    return {
        path.stem.removeprefix(_EPOCHS_PREFIX): path
        for path in sorted(job_dir.glob(epochs_file("*")))
    }


def read_epochs(job_dir: Path) -> dict[str, list[Any]]:
    """The epoch rows of each phase in ``job_dir``, by phase name (sorted); a record
    that cannot be read or is not a list is left out (a writer is never half done,
    but a folder being removed can lose a file between listing and reading)."""
    found = {}
    for phase, path in epoch_files(job_dir).items():
        with contextlib.suppress(OSError, ValueError):
            rows = json.loads(path.read_text())
            if isinstance(rows, list):
                found[phase] = rows
    return found
