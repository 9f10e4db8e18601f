"""Fixtures shared by the models tests: one tiny published bundle (smallcnn at a
non-square 16x24, so height and width cannot be swapped unnoticed)."""

from __future__ import annotations

import keras
import pytest

from models.bundle import Bundle, load_bundle, save_bundle
from models.metadata import BundleMetadata
from models.store import ModelStore
from tests.support import tiny

IMAGE_SIZE = (16, 24)
LABELS = ["daisy", "rose", "tulip"]


def make_tiny_model() -> keras.Model:
    return tiny.tiny_model(0, len(LABELS), IMAGE_SIZE)


def tiny_metadata(name: str = "flowers") -> BundleMetadata:
    return tiny.tiny_metadata(name, LABELS, IMAGE_SIZE)


@pytest.fixture(scope="session")
def tiny_model() -> keras.Model:
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_model) -> Bundle:
    """Published once; tests that damage a bundle copy it first."""
    store = ModelStore(tmp_path_factory.mktemp("store"))
    _, path = save_bundle(store, tiny_model, tiny_metadata())
    return load_bundle(path)
