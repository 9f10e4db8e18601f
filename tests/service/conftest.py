"""Fixtures for the service tests: one tiny bundle for the session, apps built on it."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from benchmarks import soak
from models.backbones import get_backbone
from models.bundle import save_bundle
from models.classifier import build_backbone, build_classifier
from models.store import ModelStore

LABELS = ["cat", "dog", "fox"]
IMAGE_SIZE = (32, 32)


def tiny_metadata(labels: list[str] = LABELS) -> dict:
    return {**soak.tiny_metadata(labels), "image_size": list(IMAGE_SIZE)}


@pytest.fixture(scope="session")
def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    spec = get_backbone("smallcnn")
    backbone = build_backbone(spec, IMAGE_SIZE, None)
    return build_classifier(spec, backbone, len(LABELS))


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, tiny_model: keras.Model) -> Path:
    """A store holding ``tiny`` version 1; shared, so never written to by tests."""
    root = tmp_path_factory.mktemp("tiny_store")
    save_bundle(ModelStore(root), "tiny", tiny_model, tiny_metadata())
    return root


@pytest.fixture
def store(tmp_path: Path, tiny_store: Path) -> Path:
    """A copy of ``tiny_store`` a test may publish into or damage."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    return root


@pytest.fixture
def publish(tiny_model: keras.Model) -> Callable[..., int]:
    """Publish the next version of a model the way training does; returns its number."""

    def publish(root: Path, name: str = "tiny", labels: list[str] = LABELS) -> int:
        version, _ = save_bundle(ModelStore(root), name, tiny_model, tiny_metadata(labels))
        return version

    return publish


@pytest.fixture
def make_app(tiny_store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable]:
    """``make_app(**overrides)``: an app on ``tiny_store`` with polling off by default."""
    from service.app import create_app

    for variable in [name for name in os.environ if name.startswith("KTL_")]:
        monkeypatch.delenv(variable)
    # create_app sets Pillow's global limit; give the original back afterwards.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    apps = []

    def make_app(**overrides):
        app = create_app({"model_store": tiny_store, "reload_interval": 0, **overrides})
        apps.append(app)
        return app

    yield make_app
    for app in apps:
        app.extensions["ktl"].registry.close()


@pytest.fixture(scope="session")
def app(tiny_store: Path):
    """One app for the tests that only send requests; loading a model takes a second."""
    from service.app import create_app
    from service.config import ServiceConfig

    saved = Image.MAX_IMAGE_PIXELS
    app = create_app(ServiceConfig(model_store=tiny_store, reload_interval=0))
    Image.MAX_IMAGE_PIXELS = saved
    yield app
    app.extensions["ktl"].registry.close()


@pytest.fixture
def client(app):
    return app.test_client()


def encode_image(
    fmt: str = "PNG", size: tuple[int, int] = (40, 30), mode: str = "RGB", seed: int = 0
) -> bytes:
    """A noisy image of ``size`` (width, height) in ``fmt``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def image_bytes() -> Callable[..., bytes]:
    return encode_image


@pytest.fixture
def labels() -> list[str]:
    return list(LABELS)
