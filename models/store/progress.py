"""A training job's progress records, in its state folder (``ModelStore.job_dir``):
``progress.json`` (the phases it finished, with their history) and one
``epochs_<phase>.json`` per phase (the rows of its finished epochs).

``JobProgress`` is the one way to them: training writes them after each epoch and
phase (``training.fitting.recipe``, through the atomic writer) and reads them to resume;
``training.jobs.state`` asks what an interrupted job got done; the job runner copies
``rows()`` into the job's record, from which the event stream and ``ktl jobs``
report. ``PHASE_ORDER`` is the one list of the phases in the order a job trains
them (``training.fitting.phases`` plans them by these names)."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

from models.store.atomic import write_json_atomically

PHASE_ORDER = ("scratch", "head", "fine_tune")
PROGRESS_FILE = "progress.json"
_EPOCHS_PREFIX = "epochs_"


def epochs_file(phase: str) -> str:
    """The name of the record of ``phase``'s finished epochs in a job's state folder."""
    return f"{_EPOCHS_PREFIX}{phase}.json"


def _phase_rank(phase: str) -> tuple[int, str]:
    """Phases in training order; a name ``PHASE_ORDER`` does not know comes after, by name."""
    known = PHASE_ORDER.index(phase) if phase in PHASE_ORDER else len(PHASE_ORDER)
    return known, phase


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class JobProgress:
    """The progress records of the job whose state is in ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _read(self, name: str) -> Any:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((self.root / name).read_text())
        return None

    def epochs(self, phase: str) -> list[dict[str, Any]]:
        """The finished epochs of ``phase`` (none when it has not started)."""
        rows = self._read(epochs_file(phase))
        return rows if isinstance(rows, list) else []

    def record_epochs(self, phase: str, rows: list[dict[str, Any]]) -> None:
        """Replace the record of ``phase``'s finished epochs (after each epoch)."""
        write_json_atomically(self.root / epochs_file(phase), rows, indent=None)

    def phases(self) -> dict[str, list[Any]]:
        """``{"done": [phase names], "history": [rows]}`` of the phases the job finished."""
        saved = self._read(PROGRESS_FILE)
        if not isinstance(saved, dict):
            return {"done": [], "history": []}
        return {"done": list(saved.get("done", [])), "history": list(saved.get("history", []))}

    def record_phases(self, done: list[str], history: list[dict[str, Any]]) -> None:
        """Replace the record of the finished phases (after each phase)."""
        write_json_atomically(
            self.root / PROGRESS_FILE, {"done": done, "history": history}, indent=None
        )

    def by_phase(self) -> dict[str, list[Any]]:
        """The epoch rows of each phase with a record, by phase name in training order; a
        record that cannot be read or is not a list is left out (a writer is never half
        done, but a folder being removed can lose a file between listing and reading)."""
        found = {}
        for path in self.root.glob(epochs_file("*")):
            with contextlib.suppress(OSError, ValueError):
                rows = json.loads(path.read_text())
                if isinstance(rows, list):
                    found[path.stem.removeprefix(_EPOCHS_PREFIX)] = rows
        return {phase: found[phase] for phase in sorted(found, key=_phase_rank)}

    def started(self) -> bool:
        """Whether the job finished a phase or started one's epochs."""
        return (self.root / PROGRESS_FILE).is_file() or any(self.root.glob(epochs_file("*")))

    def rows(self) -> list[dict[str, Any]]:
        """Every finished epoch, phase by phase in training order, each with its phase
        and number; figures that are not finite become None (JSON has none)."""
        return [
            {"phase": phase, "epoch": i + 1, **{k: _finite(v) for k, v in row.items()}}
            for phase, rows in self.by_phase().items()
            for i, row in enumerate(rows)
            if isinstance(row, dict)
        ]
