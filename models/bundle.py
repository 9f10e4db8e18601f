"""A published model bundle: ``model.keras`` + ``metadata.json`` + ``reports/``.

Loading checks every file against the sha256 recorded in the metadata and
uses Keras' ``safe_mode=True``, so a bundle can never run code it carries.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras

from models import layers as _layers  # noqa: F401  (registers BackbonePreprocessing)
from models.store import METADATA_FILE, ModelStore, PublishError

FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
REPORTS_DIR = "reports"


class BundleError(Exception):
    """A bundle that is incomplete, corrupt or does not match its checksums."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    metadata: dict
    model: keras.Model

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def version(self) -> int:
        return int(self.metadata["version"])

    @property
    def labels(self) -> list[str]:
        return list(self.metadata["labels"])

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.metadata["image_size"]
        return int(height), int(width)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_digests(bundle_dir: Path) -> dict[str, str]:
    """sha256 of every file in the bundle except metadata.json, by relative path."""
    return {
        path.relative_to(bundle_dir).as_posix(): sha256_file(path)
        for path in sorted(bundle_dir.rglob("*"))
        if path.is_file() and path.name != METADATA_FILE
    }


def read_metadata(bundle_dir: Path) -> dict:
    try:
        with open(bundle_dir / METADATA_FILE, encoding="utf-8") as f:
            metadata = json.load(f)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle_dir}: cannot read {METADATA_FILE}: {exc}") from exc
    missing = {"name", "version", "labels", "image_size", "files"} - metadata.keys()
    if missing:
        raise BundleError(f"{bundle_dir}: {METADATA_FILE} lacks {sorted(missing)}")
    return metadata


def verify_files(bundle_dir: Path, metadata: dict) -> None:
    """Raise ``BundleError`` unless every file listed in the metadata has its sha256."""
    if MODEL_FILE not in metadata["files"]:
        raise BundleError(f"{bundle_dir}: {METADATA_FILE} lists no checksum for {MODEL_FILE}")
    for relative, expected in metadata["files"].items():
        path = bundle_dir / relative
        if not path.is_file():
            raise BundleError(f"{bundle_dir}: {relative} is missing")
        if sha256_file(path) != expected:
            raise BundleError(f"{bundle_dir}: {relative} does not match its sha256 in metadata")


def load_bundle(bundle_dir: str | Path) -> Bundle:
    """Read, verify and load a bundle (``safe_mode=True``)."""
    bundle_dir = Path(bundle_dir)
    metadata = read_metadata(bundle_dir)
    verify_files(bundle_dir, metadata)
    try:
        model = keras.saving.load_model(bundle_dir / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file; all mean the same
        raise BundleError(f"{bundle_dir}: {MODEL_FILE} does not load: {exc}") from exc
    outputs = model.output_shape[-1]
    if outputs != len(metadata["labels"]):
        raise BundleError(
            f"{bundle_dir}: the model has {outputs} outputs but metadata lists "
            f"{len(metadata['labels'])} labels"
        )
    return Bundle(bundle_dir, metadata, model)


def framework_versions() -> dict[str, str]:
    import platform

    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


def save_bundle(
    store: ModelStore,
    name: str,
    model: keras.Model,
    metadata: dict,
    reports: dict[str, bytes] | None = None,
) -> tuple[int, Path]:
    """Write ``model`` (and report files) as the next version of ``name``; returns
    ``(version, path)``. ``metadata`` gets ``format_version``, ``files`` and
    ``framework`` filled in; ``version`` is assigned by the store."""
    try:
        staging = store.staging_dir(name)
    except OSError as exc:
        raise PublishError(f"Cannot write to the model store {store.root}: {exc}") from exc
    try:
        model.save(staging / MODEL_FILE)
        for relative, data in (reports or {}).items():
            target = staging / REPORTS_DIR / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise PublishError(
                f"Cannot write the bundle for {name!r} in the model store {store.root}: {exc}"
            ) from exc
        raise
    full = {
        "format_version": FORMAT_VERSION,
        **metadata,
        "name": name,
        "files": file_digests(staging),
        "framework": framework_versions(),
    }
    version = store.publish(staging, name, full)
    return version, store.root / name / str(version)
