"""The model store: ``<store>/<name>/<version>/``, laid out like a TensorFlow
Serving base path. Versions appear only complete (written in a hidden staging
folder, then renamed in one step) and are never overwritten."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from models.errors import ModelNotFound, OperationalError, did_you_mean
from models.metadata import METADATA_FILE, BundleError, BundleMetadata, read_metadata_text
from models.store.atomic import fsync_dir, fsync_tree, write_json_atomically
from models.store.labels import (
    LabelFileError,
    VersionLabels,
    default_version,
    read_labels,
    update_labels,
)
from models.store.layout import (
    JOBS_DIR,
    NAME_PATTERN,
    STAGING_DIR,
    VERSION_PATTERN,
    job_lock_for,
    validate_name,
)
from models.store.location import UnsupportedStore, check_location, is_remote


class PublishError(OperationalError):
    """Publishing failed; the store is as it was before."""

    code = "publish_failed"


class DeleteError(OperationalError):
    """A version could not be taken out of the store; it is still there."""

    code = "delete_failed"


def read_metadata_file(bundle_dir: Path) -> BundleMetadata:
    """The typed ``metadata.json`` of the bundle in ``bundle_dir`` (a version folder or
    a copy of one); ``BundleError`` if it cannot be read or is not valid."""
    try:
        text = (bundle_dir / METADATA_FILE).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle_dir}: cannot read {METADATA_FILE}: {exc}") from exc
    return read_metadata_text(text, str(bundle_dir))


class ModelStore:
    """A folder of published model bundles."""

    def __init__(self, root: str | Path):
        if is_remote(check_location(root)):
            raise UnsupportedStore(
                f"Cannot use the store {str(root)[:200]!r} here: this reads a store in a folder "
                "only, not in object storage (models.store.open_store opens either)"
            )
        self.root = Path(root)

    def model_dir(self, name: str) -> Path:
        """``<store>/<name>``: the model's versions and labels (``name`` validated)."""
        return self.root / validate_name(name)

    def version_dir(self, name: str, version: int) -> Path:
        """``<store>/<name>/<version>``: one published bundle (it may not exist)."""
        return self.model_dir(name) / str(int(version))

    def has_version(self, name: str, version: int) -> bool:
        """Whether ``version`` of ``name`` is complete (its ``metadata.json`` is there)."""
        return (self.version_dir(name, version) / METADATA_FILE).is_file()

    def local_copy(self, name: str, version: int) -> Path:
        """The version's folder on this machine, to load it from: here the folder itself;
        an object-storage store downloads and verifies it first."""
        return self.version_dir(name, version)

    def read_metadata(self, name: str, version: int) -> BundleMetadata:
        """The typed metadata of a version; ``BundleError`` when it cannot be read."""
        return read_metadata_file(self.version_dir(name, version))

    def job_dir(self, name: str, worker: int = 0) -> Path:
        """``<store>/.jobs/<name>``: where an unfinished training job of ``name`` keeps
        its state for ``--resume``; workers other than the chief keep theirs apart
        (``<name>.worker<i>``, a suffix no model name can have)."""
        root = self.root / JOBS_DIR / validate_name(name)
        return root if worker == 0 else root.with_name(f"{root.name}.worker{worker}")

    def job_lock_path(self, name: str, worker: int = 0) -> Path:
        """The lock of the training job of ``name`` (one per name and store at a time)."""
        return job_lock_for(self.job_dir(name, worker))

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
        folder = self.model_dir(name)
        if not folder.is_dir():
            return []
        return sorted(
            int(entry.name)
            for entry in folder.iterdir()
            if VERSION_PATTERN.fullmatch(entry.name) and self.has_version(name, int(entry.name))
        )

    def latest(self, name: str) -> int:
        """The highest version of ``name``."""
        versions = self.versions(name)
        if not versions:
            raise ModelNotFound(self._no_model(name))
        return versions[-1]

    def labels(self, name: str) -> VersionLabels:
        """The version labels of ``name`` and their history (``models.store.labels``)."""
        return read_labels(self.model_dir(name))

    def update_labels(
        self,
        name: str,
        change: Callable[[VersionLabels], VersionLabels],
        then: Callable[[], None] | None = None,
    ) -> VersionLabels:
        """``models.store.labels.update_labels`` on the labels of ``name``, which must
        have a folder in the store (``ModelNotFound`` otherwise)."""
        model_dir = self.model_dir(name)
        if not model_dir.is_dir():
            raise ModelNotFound(f"No model named {name!r} in {self.root}")
        return update_labels(model_dir, change, then)

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
        return version, self.version_dir(name, version)

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
            for entry in self.model_dir(name).iterdir()
            if VERSION_PATTERN.fullmatch(entry.name)
        ]
        # Read after the listing: a deletion is recorded before its folder goes, so a
        # folder missing from the listing is in this record.
        return max([*taken, *self.labels(name).deleted], default=0) + 1

    def remove_version(self, name: str, version: int) -> None:
        """Take a version folder out of the store in one step (a rename into the hidden
        staging area), then free its space. Callers record the deletion first
        (``models.store.releases.delete_version``), so its number is never reused."""
        source = self.version_dir(name, version)
        trash = self.root / STAGING_DIR / f"deleted-{name}-{version}-{uuid.uuid4().hex}"
        try:
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(source, trash)
            fsync_dir(source.parent)
        except OSError as exc:
            raise DeleteError(
                f"Could not delete {name!r} version {version} from {self.root}: "
                f"{exc.strerror or exc}; check write permission"
            ) from exc
        shutil.rmtree(trash, ignore_errors=True)

    def staging_dir(self, name: str) -> Path:
        """A fresh hidden folder on the store's file system to write a bundle into."""
        path = self.root / STAGING_DIR / f"{validate_name(name)}-{uuid.uuid4().hex}"
        path.mkdir(parents=True)
        return path

    def publish(self, staging: Path, name: str, metadata: dict) -> int:
        """Move a complete bundle from ``staging`` in as the next version of ``name``.

        ``metadata`` is written as ``metadata.json`` with its ``version`` filled in.
        On any failure the staging folder is removed and the store is unchanged.
        """
        model_dir = self.model_dir(name)
        created = not model_dir.exists()
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            while True:
                version = self._next_version(name)
                write_json_atomically(staging / METADATA_FILE, {**metadata, "version": version})
                fsync_tree(staging)
                target = self.version_dir(name, version)
                try:
                    os.rename(staging, target)
                except OSError:
                    # rename(2) fails on an existing non-empty folder: a concurrent
                    # publisher took this number, so take the next one.
                    if target.exists():
                        continue
                    raise
                fsync_dir(target.parent)
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
