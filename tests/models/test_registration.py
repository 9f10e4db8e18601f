"""How ktl's layers reach Keras: by importing ``models.networks.layers`` (or ``models`` once Keras
is imported), with no import hook, so a bundle's bare model loads with Keras alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "fixtures" / "store_v1" / "legacy" / "1" / "model.keras"


def python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_importing_models_changes_no_import_machinery_and_imports_no_keras():
    result = python(
        "import sys\n"
        "finders = list(sys.meta_path)\n"
        "import models, models.networks.backbones\n"
        "print(sys.meta_path == finders, 'keras' in sys.modules)",
        timeout=60,
    )
    assert result.stdout.split() == ["True", "False"], result.stderr


@pytest.mark.slow  # a Python of its own that imports TensorFlow: seconds each
@pytest.mark.parametrize(
    "imports",
    ["import models.networks.layers\nimport keras", "import keras\nimport models"],
    ids=["models.networks.layers-first", "keras-then-models"],
)
def test_a_bundles_model_loads_with_keras_alone(imports):
    result = python(
        f"{imports}\n"
        f"model = keras.saving.load_model({str(MODEL)!r}, safe_mode=True)\n"
        "print(type(model.layers[1]).__name__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "BackbonePreprocessing"
