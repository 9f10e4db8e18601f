"""The store's disk or permissions fail while ``ktl train`` publishes: exit 1, a
message naming the store, the store as it was, and ``--resume`` publishes later.

Tests run as root (chmod blocks nothing) and no small tmpfs can be mounted, so the
failing system calls are replaced in-process, each only for paths of the store."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import keras
import pytest

import models.store.atomic
import models.store.versions
from cli import main
from models.store import ModelStore
from tests.support.data import make_colour_dataset

pytestmark = pytest.mark.slow  # each case trains twice, in-process


def _args(data: Path, store: Path, *extra: str) -> list[str]:
    return [
        "train", str(data), "--name", "colours", "--store", str(store), "--backbone", "smallcnn",
        "--weights", "none", "--image-size", "12", "--epochs", "1", "--batch-size", "8",
        "--no-augment", *extra,
    ]  # fmt: skip


def _tree(root: Path) -> dict[str, str]:
    """Every model file of the store with its sha256 (hidden folders aside)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).parts[0].startswith(".")
    }


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("faults")
    data = make_colour_dataset(root / "data", per_class=6, size=12)
    assert main(_args(data, root / "store")) == 0
    return data, root / "store"


def _fail(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


def _only_in(store: Path, real, code: int):
    """``real``, except that it fails with ``code`` for paths inside ``store``."""

    def call(path, *args, **kwargs):
        if str(store) in os.fsdecode(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real(path, *args, **kwargs)

    return call


def _one_clean_error(code: int, err: str) -> str:
    """Exit 1, no traceback, and the one ``ktl: error:`` line, returned."""
    assert code == 1, err
    assert "Traceback" not in err
    [message] = [line for line in err.splitlines() if line.startswith("ktl: error:")]
    return message


FAULTS = {
    # rename(2) refused while the version is staged and moved in: permissions
    "rename EACCES": lambda mp, store: mp.setattr(
        os, "rename", _only_in(store / ".staging", os.rename, errno.EACCES)
    ),
    # the disk fills up while metadata.json is written into the staged version
    "metadata ENOSPC": lambda mp, store: mp.setattr(
        models.store.atomic,
        "open",
        _only_in(store / ".staging", open, errno.ENOSPC),
        raising=False,
    ),
    # fsync reports an I/O error when the staged version is made durable
    "fsync EIO": lambda mp, store: mp.setattr(
        models.store.versions, "fsync_tree", _fail(errno.EIO)
    ),
    # the store's root is not writable: no staging folder can be made
    "mkdir EROFS": lambda mp, store: mp.setattr(
        Path, "mkdir", _only_in(store / ".staging", Path.mkdir, errno.EROFS)
    ),
    # the disk fills up while the model itself is written
    "model save ENOSPC": lambda mp, store: mp.setattr(keras.Model, "save", _fail(errno.ENOSPC)),
}


@pytest.mark.parametrize(
    "fault",
    [
        name
        for name in FAULTS
    ],
)  # fmt: skip
def test_a_failing_store_is_exit_1_named_and_unchanged_and_resume_publishes(
    published, tmp_path, monkeypatch, capsys, fault
):
    data, original = published
    store = tmp_path / "store"
    shutil.copytree(original, store)
    before = _tree(store)
    capsys.readouterr()

    FAULTS[fault](monkeypatch, store)
    code = main(_args(data, store))
    monkeypatch.undo()
    err = capsys.readouterr().err

    message = _one_clean_error(code, err)
    assert str(store) in message, message
    assert _tree(store) == before, "the store changed"
    assert ModelStore(store).versions("colours") == [1]
    staging = store / ".staging"
    assert not staging.exists() or not any(staging.iterdir()), "staging left behind"

    assert main(_args(data, store, "--resume")) == 0
    assert ModelStore(store).versions("colours") == [1, 2]


def test_a_job_state_that_cannot_be_saved_is_exit_1_naming_the_file(tmp_path, monkeypatch, capsys):
    """The store's disk refuses the job's own state (``<store>/.jobs/``) before any
    training: a ktl error naming the file, no traceback, nothing published."""
    data = make_colour_dataset(tmp_path / "data", per_class=6, size=12)
    store = tmp_path / "store"
    monkeypatch.setattr(os, "rename", _only_in(store / ".jobs", os.rename, errno.ENOSPC))
    code = main(_args(data, store))
    monkeypatch.undo()
    err = capsys.readouterr().err
    message = _one_clean_error(code, err)
    assert "could not save the job's state to" in message and str(store) in message, message
    assert ModelStore(store).names() == []
