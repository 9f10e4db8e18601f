"""An unfinished job's state, so ``--resume`` can continue it: its settings, the
decoded images, finished phases and epochs, in ``<store>/.jobs/<name>/`` until
it publishes. One job per name and store at a time (a lock file beside it)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ConfigError, OperationalError
from models.store import write_json_atomically
from models.store.layout import job_lock_for
from models.store.progress import JobProgress
from training.config import TrainConfig
from training.dataset.data import DataError, Listing, Prepared, listing_fingerprint, prepare

Log = Callable[[str], None]

# Settings that change what a job computes: a resumed job must match them.
RESUME_KEYS = (
    "data",
    "backbone",
    "weights",
    "image_size",
    "batch_size",
    "epochs",
    "fine_tune_epochs",
    "min_steps",
    "unfreeze_from",
    "lr",
    "fine_tune_lr",
    "val_split",
    "test_split",
    "seed",
    "augment",
    "dropout",
    "pooling",
)
# What a job keeps of the decoded data when its phases are started over.
_DATA_FILES = ("config.json", "data.json", "pixels.npy")


class StateNotSaved(OperationalError):
    """The job's state could not be written into the store (exit 1)."""

    code = "state_not_saved"


class JobState:
    """Files of an unfinished job: its config, decoded pixels, finished phases."""

    def __init__(self, root: Path, pixels_file: Path):
        self.root = root
        self.pixels_file = pixels_file
        self.records = JobProgress(root)  # its finished phases and epochs

    def read(self, name: str) -> Any:
        try:
            return json.loads((self.root / name).read_text())
        except (OSError, ValueError):
            return None

    def write(self, name: str, data: dict | list) -> None:
        path = self.root / name
        try:
            write_json_atomically(path, data, indent=None)
        except OSError as exc:  # a full disk or a read-only store: say where, no traceback
            raise StateNotSaved(
                f"could not save the job's state to {path}: {exc.strerror or exc}"
            ) from exc

    def forget_phases(self) -> None:
        """Drop finished phases and epochs (they were trained on other data)."""
        for stale in self.root.glob("*"):
            if stale.name not in _DATA_FILES:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()

    def remove(self) -> None:
        """Remove the job's state and its decoded-image cache."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.pixels_file.unlink(missing_ok=True)

    def progress(self) -> str | None:
        """What an interrupted job got done ("phase head: 3 epochs; ..."), None when it
        decoded nothing and finished no epoch (then there is nothing worth resuming)."""
        done = self.records.phases()["done"]
        parts = [f"phase {name} finished" for name in done]
        for phase, rows in self.records.by_phase().items():
            if phase not in done and rows:
                parts.append(f"phase {phase}: {len(rows)} epochs")
        if not parts and self.read("data.json") is not None and self.pixels_file.is_file():
            parts.append("images decoded, no epoch finished")
        return "; ".join(parts) or None

    def trained(self) -> bool:
        """Whether the job finished an epoch."""
        return self.records.started()


def pixels_file(root: Path, cache_dir: str | None) -> Path:
    """The decoded-image cache: in the job's folder, or under ``--cache-dir``."""
    if cache_dir:
        return Path(cache_dir) / f"{root.name}.pixels.npy"
    return root / "pixels.npy"


@contextlib.contextmanager
def open_job(
    root: Path, config: TrainConfig, log: Log, *, resumable: bool = True
) -> Iterator[JobState]:
    """The job's state, locked for this process. An interrupted job's state is
    continued with ``--resume`` (same settings) or discarded with ``--restart``; a job
    that cannot be resumed (several workers) discards it. On success the caller
    removes the state (``JobState.remove``). A job that fails before its first epoch
    leaves nothing; an interrupted one keeps what it did (decoded images, epochs)."""
    root.mkdir(parents=True, exist_ok=True)
    lock_path = job_lock_for(root)
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(
                f"another training job for {root.name!r} is running on this store"
            ) from None
        state = JobState(root, pixels_file(root, config.cache_dir))
        _check_resume(state, config, log, resumable)
        try:
            yield state
        except Exception:
            if not state.trained():  # a job that fails before its first epoch leaves nothing
                state.remove()
            raise
        except BaseException:  # interrupted: what was done waits for --resume or --restart
            if state.progress() is None:
                state.remove()
            raise
        finally:
            if not root.exists():  # finished, or nothing to resume: the lock goes too
                lock_path.unlink(missing_ok=True)


def _check_resume(state: JobState, config: TrainConfig, log: Log, resumable: bool) -> None:
    """Continue (--resume), discard (--restart) or refuse to overwrite an interrupted
    job; state left by a job that never finished an epoch goes without a word."""
    saved = state.read("config.json")
    done = state.progress() if saved is not None else None
    wanted = {key: config.to_dict()[key] for key in RESUME_KEYS}
    if done is not None and not (config.resume or config.restart or not resumable):
        raise ConfigError(
            f"an interrupted training job for {config.name!r} is waiting ({done}): pass "
            "--resume to continue it, or --restart to discard it and start over"
        )
    if done is not None and config.resume and saved != wanted:
        changed = sorted(key for key in wanted if saved.get(key) != wanted[key])
        raise ConfigError(
            f"--resume: the interrupted job used other settings ({', '.join(changed)}); "
            "pass --restart to discard it and start over with these"
        )
    if done is not None and config.resume:
        log(f"Resuming the interrupted job for {config.name!r} ({done})")
    else:
        if done is not None:
            why = "--restart" if config.restart else "a job of several workers starts over"
            log(f"Discarding the interrupted job for {config.name!r} ({done}): {why}")
        elif config.resume:
            log(f"No interrupted job for {config.name!r} to resume; starting a new one")
        state.remove()
        state.root.mkdir(parents=True)
    state.write("config.json", wanted)


def prepared_data(
    state: JobState, listing: Listing, size: tuple[int, int], config: TrainConfig, log: Log
) -> tuple[Prepared, bool]:
    """Decode once per job; a resumed job reuses the decoded pixels if the files
    have not changed since (then the second value is True)."""
    print_ = listing_fingerprint(listing, size)
    saved = state.read("data.json")
    state.pixels_file.parent.mkdir(parents=True, exist_ok=True)
    if saved and saved["fingerprint"] == print_ and state.pixels_file.is_file():
        log("Reusing the decoded images of the interrupted job")
        return _saved_prepared(saved, np.load(state.pixels_file, mmap_mode="r")), True
    if saved:
        log("The dataset changed since the interruption; starting the job over")
    prepared = prepare(
        listing,
        size,
        val_split=config.val_split,
        test_split=config.test_split,
        seed=config.seed,
        pixels_file=state.pixels_file,
        log=log,
    )
    if isinstance(prepared.pixels, np.memmap):
        prepared.pixels.flush()
    state.write(
        "data.json",
        {
            "fingerprint": print_,
            "labels": prepared.labels,
            "targets": prepared.targets.tolist(),
            "train": prepared.train.tolist(),
            "val": prepared.val.tolist(),
            "test": prepared.test.tolist(),
            "report": prepared.report,
        },
    )
    return prepared, False


def _saved_prepared(saved: dict, pixels: np.ndarray) -> Prepared:
    return Prepared(
        saved["labels"],
        pixels,
        np.array(saved["targets"], np.int32),
        np.array(saved["train"], np.int64),
        np.array(saved["val"], np.int64),
        saved["report"],
        np.array(saved.get("test", []), np.int64),
    )
