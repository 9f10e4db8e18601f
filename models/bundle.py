"""A published model bundle: ``model.keras`` + ``metadata.json`` + ``reports/``.

Loading checks every file against the sha256 recorded in the metadata and
uses Keras' ``safe_mode=True``, so a bundle can never run code it carries.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import keras
import numpy as np

from models import drift
from models.engines.inference import Classifier, PooledFeatures
from models.networks import layers as _layers  # noqa: F401  (registers BackbonePreprocessing)

if TYPE_CHECKING:
    from models.engines.int8 import Int8Classifier

    ServingEngine: TypeAlias = Classifier | Int8Classifier
from models.metadata import BundleError, BundleMetadata
from models.predictions import PredictResponse, predict_images
from models.store import METADATA_FILE, ModelStore, PublishError, read_metadata_file

MODEL_FILE = "model.keras"
REPORTS_DIR = "reports"
# The content hashes (sha256 of the file's bytes, one a line) of the images the version
# trained and validated on; not in reports/, which the service serves.
SEEN_FILE = "seen.txt"

__all__ = ["Bundle", "BundleError", "BundleMetadata", "load_bundle", "save_bundle"]


@dataclass(frozen=True)
class Bundle:
    """A loaded, checksum-verified version: its folder, metadata and Keras model."""

    path: Path
    metadata: BundleMetadata
    model: keras.Model

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> int:
        assert self.metadata.version is not None  # read_metadata guarantees it
        return self.metadata.version

    @property
    def labels(self) -> list[str]:
        return list(self.metadata.labels)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.metadata.image_size

    @cached_property
    def classifier(self) -> Classifier:
        """The traced forward pass of this bundle, built (and warmed up) on first use."""
        return Classifier(self)

    @cached_property
    def pooled_features(self) -> PooledFeatures:
        """The backbone's pooled features of images (the drift monitor's), built on first
        use and kept with the loaded version."""
        return PooledFeatures(self)

    def drift_reference(self) -> np.ndarray | None:
        """The validation features training saved for the drift monitor (``models.drift``);
        None for a version published without them."""
        monitoring = self.metadata.monitoring
        reference = monitoring.drift_reference if monitoring is not None else None
        if reference is None:
            return None
        return drift.read_reference(self.path / reference.file)

    def seen(self) -> frozenset[str] | None:
        """The content hashes of the images this version trained and validated on;
        None for a version that does not record them (published before ktl did)."""
        path = self.path / SEEN_FILE
        if not path.is_file():
            return None
        return frozenset(path.read_text().split())

    def engine(self, choice: str = "keras", gate: float | None = None) -> ServingEngine:
        """The forward pass that serves this version under ``choice`` (``auto``,
        ``keras`` or ``int8``, see :func:`models.engines.int8.choose_engine`), warmed up.
        ``int8`` on a version without an INT8 artifact is an error that says how to
        make one."""
        from models.engines import int8

        if choice == "int8" and int8.int8_agreement(self.metadata) is None:
            raise int8.QuantizationError(
                f"{self.name} version {self.version} has no INT8 engine; make one with "
                f"`ktl quantize {self.name}:{self.version} --calibration DATA` "
                "(or train with --int8)"
            )
        gate = int8.DEFAULT_GATE if gate is None else gate
        if int8.choose_engine(self.metadata, choice, gate) == "int8":
            return int8.Int8Classifier(self)
        return self.classifier

    def predict(
        self,
        images: Sequence[str | Path | np.ndarray] | np.ndarray,
        top_k: int = 5,
        min_confidence: float | None = None,
    ) -> PredictResponse:
        """Classify image files or RGB arrays: the body ``ktl predict --json`` prints
        and the HTTP native predict route returns (same preprocessing, same model).
        Each prediction's decision uses the version's threshold, or ``min_confidence``."""
        return predict_images(self, images, top_k, min_confidence)


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


def read_metadata(bundle_dir: Path) -> BundleMetadata:
    """The typed ``metadata.json`` of a published bundle (``BundleError`` if unusable)."""
    return read_metadata_file(bundle_dir)


def verify_files(bundle_dir: Path, metadata: BundleMetadata) -> None:
    """Raise ``BundleError`` unless every file listed in the metadata has its sha256."""
    if MODEL_FILE not in metadata.files:
        raise BundleError(f"{bundle_dir}: {METADATA_FILE} lists no checksum for {MODEL_FILE}")
    for relative, expected in metadata.files.items():
        path = bundle_dir / relative
        if not path.is_file():
            raise BundleError(f"{bundle_dir}: {relative} is missing")
        if sha256_file(path) != expected:
            raise BundleError(f"{bundle_dir}: {relative} does not match its sha256 in metadata")


def load_bundle(bundle_dir: str | Path) -> Bundle:
    """Read, verify and load a bundle's folder (``safe_mode=True``)."""
    bundle_dir = Path(bundle_dir)
    metadata = read_metadata(bundle_dir)
    verify_files(bundle_dir, metadata)
    try:
        model = keras.saving.load_model(bundle_dir / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file; all mean the same
        raise BundleError(f"{bundle_dir}: {MODEL_FILE} does not load: {exc}") from exc
    outputs = model.output_shape[-1]
    if outputs != len(metadata.labels):
        raise BundleError(
            f"{bundle_dir}: the model has {outputs} outputs but metadata lists "
            f"{len(metadata.labels)} labels"
        )
    return Bundle(bundle_dir, metadata, model)


def seen_file(hashes: Sequence[str]) -> bytes:
    """:data:`SEEN_FILE`'s bytes for these content hashes."""
    return "".join(f"{digest}\n" for digest in hashes).encode()


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
    model: keras.Model,
    metadata: BundleMetadata,
    reports: dict[str, bytes] | None = None,
    artifacts: Mapping[str, Path | bytes] | None = None,
) -> tuple[int, Path]:
    """Write ``model`` (and report files) as the next version of ``metadata.name``;
    returns ``(version, path)``. ``artifacts`` are files copied (or bytes written) in
    at the relative path given (an engine's model file, :data:`SEEN_FILE`). ``files``
    and ``framework`` are filled in here, the version by the store."""
    name = metadata.name
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
        for relative, source in (artifacts or {}).items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                target.write_bytes(source)
            else:
                shutil.copyfile(source, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise PublishError(
                f"Cannot write the bundle for {name!r} in the model store {store.root}: {exc}"
            ) from exc
        raise
    full: dict[str, Any] = metadata.replace(
        files=file_digests(staging), framework=framework_versions()
    ).to_json()
    version = store.publish(staging, name, full)
    return version, store.version_dir(name, version)
