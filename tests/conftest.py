"""Fixtures shared by every test package: generated datasets, never files from
outside the repository (the builders are in ``tests.support``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.data import make_colour_dataset

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def colour_dataset(tmp_path: Path) -> Path:
    return make_colour_dataset(tmp_path / "data")
