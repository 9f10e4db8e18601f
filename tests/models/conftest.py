"""Fixtures shared by the models tests: one tiny published bundle."""

from __future__ import annotations

import keras
import pytest

from models.bundle import Bundle, load_bundle, save_bundle
from models.store import ModelStore
from tests.models.tiny import make_tiny_model, tiny_metadata


@pytest.fixture(scope="session")
def tiny_model() -> keras.Model:
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_model) -> Bundle:
    """Published once; tests that damage a bundle copy it first."""
    store = ModelStore(tmp_path_factory.mktemp("store"))
    _, path = save_bundle(store, "flowers", tiny_model, tiny_metadata())
    return load_bundle(path)
