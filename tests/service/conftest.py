"""Fixtures for the service tests: one tiny bundle for the session, apps built on it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import pytest

from tests.support.data import encode_image
from tests.support.tiny import LABELS, publish_tiny
from tests.support.tiny import SIZE as IMAGE_SIZE
from tests.support.tiny import tiny_metadata as _tiny_metadata
from tests.support.tiny import tiny_model as _tiny_model

__all__ = ["IMAGE_SIZE", "LABELS", "encode_image", "tiny_metadata"]


def tiny_metadata(name: str = "tiny", labels: list[str] = LABELS):
    return _tiny_metadata(name, labels)


@pytest.fixture(scope="session")
def tiny_model() -> keras.Model:
    return _tiny_model(0)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, tiny_model: keras.Model) -> Path:
    """A store holding ``tiny`` version 1; shared, so never written to by tests."""
    root = tmp_path_factory.mktemp("tiny_store")
    publish_tiny(root, model=tiny_model)
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
        version, _ = publish_tiny(root, name, model=tiny_model, labels=labels)
        return version

    return publish


@pytest.fixture
def make_app(tiny_store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable]:
    """``make_app(**overrides)``: an app on ``tiny_store`` with polling off by default."""
    from service.app import create_app

    for variable in [name for name in os.environ if name.startswith("KTL_")]:
        monkeypatch.delenv(variable)
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

    app = create_app(ServiceConfig(model_store=tiny_store, reload_interval=0))
    yield app
    app.extensions["ktl"].registry.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def image_bytes() -> Callable[..., bytes]:
    return encode_image


@pytest.fixture
def labels() -> list[str]:
    return list(LABELS)
