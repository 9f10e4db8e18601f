"""The one tiny-model builder: an untrained smallcnn classifier (random weights
from a seed), its metadata as ``ktl train`` writes it, and stores holding it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

    from models.metadata import BundleMetadata

LABELS = ["cat", "dog", "fox"]
SIZE = (32, 32)


def tiny_model(
    seed: int = 0, classes: int = len(LABELS), size: tuple[int, int] = SIZE
) -> keras.Model:
    """smallcnn at ``size`` (height, width) with a ``classes``-way softmax."""
    import keras

    from models.networks.backbones import get_backbone
    from models.networks.classifier import build_backbone, build_classifier

    keras.utils.set_random_seed(seed)
    spec = get_backbone("smallcnn")
    return build_classifier(spec, build_backbone(spec, size, None), classes)


def tiny_metadata(
    name: str = "tiny", labels: list[str] | None = None, size: tuple[int, int] = SIZE
) -> BundleMetadata:
    """Metadata for a tiny model's bundle, as ``ktl train`` would write it (no figures)."""
    from models.metadata import BundleMetadata, InputSpec
    from models.preprocessing import RESIZE_POLICY

    return BundleMetadata(
        name=name,
        labels=tuple(labels or LABELS),
        image_size=size,
        backbone="smallcnn",
        input=InputSpec(shape=(*size, 3)),
        resize=RESIZE_POLICY,
        created_at="2024-01-01T00:00:00Z",
    )


def publish_tiny(
    root: Path,
    name: str = "tiny",
    *,
    model: keras.Model | None = None,
    labels: list[str] | None = None,
    seed: int = 0,
) -> tuple[int, Path]:
    """Publish the next version of ``name`` in the store at ``root``: ``(version, path)``."""
    from models.bundle import save_bundle
    from models.store import ModelStore

    labels = labels or LABELS
    if model is None:
        model = tiny_model(seed, len(labels))
    size = tuple(model.input_shape[1:3])
    return save_bundle(ModelStore(root), model, tiny_metadata(name, labels, size), {})


def make_tiny_store(root: Path, name: str = "tiny", seed: int = 0) -> Path:
    """A store holding ``name`` version 1: smallcnn at 32x32, 3 labels (untrained)."""
    publish_tiny(root, name, seed=seed)
    return root


def publish_metadata_only(
    root: Path,
    name: str = "tiny",
    *,
    labels: list[str] | None = None,
    size: tuple[int, int] = SIZE,
    **extra: object,
) -> int:
    """Publish the next version of ``name`` holding only its ``metadata.json`` (with
    ``extra`` keys): enough for listings, labels and deletion, without TensorFlow; it
    does not load. Returns its number."""
    from models.store import ModelStore

    store = ModelStore(root)
    metadata = {**tiny_metadata(name, labels, size).to_json(), "files": {}, **extra}
    return store.publish(store.staging_dir(name), name, metadata)
