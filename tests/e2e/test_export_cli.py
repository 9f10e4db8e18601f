"""``ktl export`` as a user runs it: a TensorFlow Serving base path, and clear exit-2
errors for mistakes."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import ktl, ktl_here
from tests.support.tiny import publish_tiny

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    publish_tiny(root, "pets", labels=["cat", "dog"])
    return root


def test_export_savedmodel_writes_a_tf_serving_base_path(store, tmp_path):
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    out = tmp_path / "exports"
    result = ktl("export", "--name", "pets", "--format", "savedmodel", "--out", str(out),
                 "--store", str(store), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "name": "pets", "version": 1, "format": "savedmodel", "path": str(out / "pets" / "1"),
    }  # fmt: skip
    assert (out / "pets" / "1" / "saved_model.pb").is_file()
    assert (out / "pets" / "1" / "variables").is_dir()
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "nope", "--format", "onnx"], "No model named 'nope'"),
        (["--name", "pets", "--version", "7", "--format", "onnx"], "has no version 7"),
        (["--name", "pets", "--format", "tflite", "--out", "{store}/x"], "inside the model store"),
    ],
)
def test_user_errors_exit_2(store, tmp_path, args, message):
    args = [a.replace("{store}", str(store)) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "exports")]
    result = ktl_here("export", *args, *out, "--store", str(store))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (store / "x").exists()


def test_an_unknown_format_is_a_usage_error(store):
    result = ktl_here("export", "--name", "pets", "--format", "pickle", "--store", str(store))
    assert result.returncode == 2
    assert "savedmodel" in result.stderr
