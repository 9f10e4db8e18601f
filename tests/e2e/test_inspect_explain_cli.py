"""``ktl inspect`` and ``ktl explain`` run as a user runs them: one ``ktl explain`` as a
process, the rest by ``cli.main`` in this process (``ktl_here``), TensorFlow imported once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.bundle import save_bundle
from models.store import ModelStore
from tests.models.conftest import IMAGE_SIZE, make_tiny_model, tiny_metadata
from tests.support.cli import ktl, ktl_here

pytestmark = pytest.mark.slow


def png_format(path: Path) -> str | None:
    with Image.open(path) as image:
        return image.format


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    save_bundle(ModelStore(root), make_tiny_model(), tiny_metadata())
    return root


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_inspect_a_backbone_as_json():
    result = ktl_here("inspect", "vgg16", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backbone"] == "vgg16" and report["total_params"] == 14_714_688
    assert all(r["formula"] == r["output_shape"][:2] for r in report["layers"] if r["formula"])


def test_inspect_a_model_as_text_with_its_filters(store, tmp_path):
    out = tmp_path / "filters.png"
    result = ktl_here("inspect", "--name", "flowers", "--store", str(store), "--filters", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"flowers version 1 at {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}")
    assert "block1_conv1" in result.stdout and "would need" in result.stdout
    assert png_format(out) == "PNG"


def test_explain_writes_gradcam_and_deconvnet_images(store, photo, tmp_path):
    for method, run in (("gradcam", ktl), ("deconvnet", ktl_here)):
        out = tmp_path / f"{method}.png"
        result = run(
            "explain", str(photo), "--name", "flowers", "--store", str(store), "--out", str(out),
            "--method", method, "--class", "rose",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert png_format(out) == "PNG"
    assert "'rose'" in ktl_here(
        "explain", str(photo), "--name", "flowers", "--store", str(store), "--class", "1",
        "--out", str(tmp_path / "x.png"),
    ).stdout  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect"], "give a BACKBONE or --name"),
        (["inspect", "nope"], "Unknown backbone 'nope'"),
        (["inspect", "alexnet", "--image-size", "40"], "at least 67x67"),
        (["explain", "{photo}", "--name", "flowers", "--class", "oak"], "Unknown class 'oak'"),
        (["explain", "{photo}", "--name", "flowers", "--layer", "nope"], "no layer 'nope'"),
    ],
)
def test_user_errors_exit_2(store, photo, tmp_path, args, message):
    args = [a.format(photo=photo) for a in args]
    if args[0] == "explain":
        args += ["--out", str(tmp_path / "x.png")]
    result = ktl_here(*args, "--store", str(store))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
