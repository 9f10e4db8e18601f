"""The model store: ``<store>/<name>/<version>/``, laid out like a TensorFlow
Serving base path. Versions appear only complete (written in a hidden staging
folder, then renamed in one step) and are never overwritten."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from models.errors import ModelNotFound, OperationalError, did_you_mean
from models.labels import LabelFileError, VersionLabels, default_version, read_labels

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,17}")
METADATA_FILE = "metadata.json"
_STAGING = ".staging"
_JOBS = ".jobs"


__all__ = [
    "DeleteError", "InvalidName", "ModelNotFound", "ModelStore", "PublishError", "validate_name",
]  # fmt: skip


class InvalidName(ModelNotFound):
    """A model name that does not match ``[a-z0-9][a-z0-9_-]{0,63}``: no model can
    have it (over HTTP a 404, like any unknown model)."""


class PublishError(OperationalError):
    """Publishing failed; the store is as it was before."""

    code = "publish_failed"


class DeleteError(OperationalError):
    """A version could not be taken out of the store; it is still there."""

    code = "delete_failed"


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


class ModelStore:
    """A folder of published model bundles."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def names(self) -> list[str]:
        """Models with at least one complete version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and NAME_PATTERN.fullmatch(entry.name) and self.versions(entry.name)
        )

    def versions(self, name: str) -> list[int]:
        """Complete versions of ``name``, ascending."""
        folder = self.root / validate_name(name)
        if not folder.is_dir():
            return []
        return sorted(
            int(entry.name)
            for entry in folder.iterdir()
            if VERSION_PATTERN.fullmatch(entry.name) and (entry / METADATA_FILE).is_file()
        )

    def latest(self, name: str) -> int:
        """The highest version of ``name``."""
        versions = self.versions(name)
        if not versions:
            raise ModelNotFound(self._no_model(name))
        return versions[-1]

    def labels(self, name: str) -> VersionLabels:
        """The version labels of ``name`` and their history (``models.labels``)."""
        return read_labels(self.root / validate_name(name))

    def default(self, name: str) -> int:
        """The version ``name`` serves by default: the one labelled stable, else the
        highest."""
        version = default_version(self.versions(name), self.labels(name))
        if version is None:
            raise ModelNotFound(self._no_model(name))
        return version

    def resolve(self, name: str, version: int | None = None) -> tuple[int, Path]:
        """``(version, path)`` of a version, the default when ``version`` is None."""
        if version is None:
            version = self.default(name)
        elif version not in (versions := self.versions(name)):
            if not versions:
                raise ModelNotFound(self._no_model(name))
            raise ModelNotFound(
                f"Model {name!r} has no version {version} in {self.root}; its versions are "
                f"{', '.join(map(str, versions))}"
            )
        return version, self.root / name / str(version)

    def check_exists(self) -> None:
        """``ModelNotFound`` saying which store was read and how to choose another,
        when there is no store there."""
        if not self.root.is_dir():
            raise ModelNotFound(
                f"No model store at {self.root.resolve()} (it does not exist): choose the store "
                "with --store DIR or the KTL_MODEL_STORE variable (default ./model_store)"
            )

    def _no_model(self, name: str) -> str:
        """Why ``name`` is not found, with what the store does hold."""
        self.check_exists()
        names = self.names()
        if not names:
            return f"No model named {name!r}: the store {self.root} holds no model yet"
        return (
            f"No model named {name!r}{did_you_mean(name, names)} in {self.root}; it holds: "
            f"{', '.join(names)}"
        )

    def _next_version(self, name: str) -> int:
        """One above every number in use, complete or not, or deleted, so none is ever
        reused."""
        taken = [
            int(entry.name)
            for entry in (self.root / name).iterdir()
            if VERSION_PATTERN.fullmatch(entry.name)
        ]
        # Read after the listing: a deletion is recorded before its folder goes, so a
        # folder missing from the listing is in this record.
        return max([*taken, *self.labels(name).deleted], default=0) + 1

    def remove_version(self, name: str, version: int) -> None:
        """Take a version folder out of the store in one step (a rename into the hidden
        staging area), then free its space. Callers record the deletion first
        (``models.releases.delete_version``), so its number is never reused."""
        source = self.root / validate_name(name) / str(version)
        trash = self.root / _STAGING / f"deleted-{name}-{version}-{uuid.uuid4().hex}"
        try:
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(source, trash)
            _fsync_dir(source.parent)
        except OSError as exc:
            raise DeleteError(
                f"Could not delete {name!r} version {version} from {self.root}: "
                f"{exc.strerror or exc}; check write permission"
            ) from exc
        shutil.rmtree(trash, ignore_errors=True)

    def staging_dir(self, name: str) -> Path:
        """A fresh hidden folder on the store's file system to write a bundle into."""
        path = self.root / _STAGING / f"{validate_name(name)}-{uuid.uuid4().hex}"
        path.mkdir(parents=True)
        return path

    def job_dir(self, name: str) -> Path:
        """Where an unfinished training job of ``name`` keeps its state for ``--resume``."""
        return self.root / _JOBS / validate_name(name)

    def publish(self, staging: Path, name: str, metadata: dict) -> int:
        """Move a complete bundle from ``staging`` in as the next version of ``name``.

        ``metadata`` is written as ``metadata.json`` with its ``version`` filled in.
        On any failure the staging folder is removed and the store is unchanged.
        """
        validate_name(name)
        model_dir = self.root / name
        created = not model_dir.exists()
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            while True:
                version = self._next_version(name)
                _write_json(staging / METADATA_FILE, {**metadata, "version": version})
                _fsync_tree(staging)
                target = self.root / name / str(version)
                try:
                    os.rename(staging, target)
                except OSError:
                    # rename(2) fails on an existing non-empty folder: a concurrent
                    # publisher took this number, so take the next one.
                    if target.exists():
                        continue
                    raise
                _fsync_dir(target.parent)
                return version
        except (OSError, LabelFileError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if created:
                with contextlib.suppress(OSError):
                    model_dir.rmdir()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise PublishError(
                f"Could not publish {name!r} to {self.root}: {reason}. "
                "The store is unchanged; check free space and write permission."
            ) from exc


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        else:
            _fsync_dir(path)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
