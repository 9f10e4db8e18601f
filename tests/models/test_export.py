"""Exports loaded by their own runtimes give the Keras model's probabilities, and the
SavedModel decodes images in its graph to the same pixels as ``load_image``."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from models.bundle import Bundle
from models.engines.export import (
    LABELS_FILE,
    ExportError,
    check_outside_store,
    decode_image,
    export_bundle,
)
from models.preprocessing import load_image

TOLERANCE = 1e-4


def _encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _noise(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    smooth = np.cumsum(pixels.astype(np.int32) - 127, axis=1) // 8 + 128  # some structure
    return Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)).convert(mode)


def _rgba(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")


def _pngs(size: tuple[int, int]) -> dict[str, bytes]:
    height, width = size
    return {
        "at size": _encode(_noise(width, height, 1)),
        "larger": _encode(_noise(97, 203, 2)),
        "much larger (box reduction)": _encode(_noise(640, 480, 3)),
        "smaller": _encode(_noise(10, 7, 4)),
        "grayscale": _encode(_noise(50, 40, 5, "L")),
        "palette": _encode(_noise(60, 45, 6, "P")),
        "alpha": _encode(_rgba(70, 30, 7)),
    }


@pytest.fixture(scope="module")
def exported(tiny_bundle: Bundle, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exports")
    formats = ["savedmodel", "tflite"]
    if importlib.util.find_spec("tf2onnx") is not None:
        formats.append("onnx")
    return {fmt: export_bundle(tiny_bundle, fmt, out) for fmt in formats}


def _keras(bundle: Bundle, pixels: np.ndarray) -> np.ndarray:
    return bundle.model(pixels.astype(np.float32), training=False).numpy()


def test_in_graph_decoding_gives_load_image_pixels(tiny_bundle: Bundle):
    size = tiny_bundle.image_size
    decode = tf.function(lambda data: decode_image(data, size), reduce_retracing=True)
    for case, data in _pngs(size).items():
        np.testing.assert_array_equal(
            decode(tf.constant(data)).numpy(), load_image(data, size), err_msg=case
        )


def test_savedmodel_layout_and_both_signatures(tiny_bundle: Bundle, exported):
    folder = exported["savedmodel"]
    assert folder.parts[-2:] == (tiny_bundle.name, str(tiny_bundle.version))
    assert (folder / "saved_model.pb").is_file() and (folder / "variables").is_dir()
    assert (folder / LABELS_FILE).read_text().split() == tiny_bundle.labels
    assert json.loads((folder / "metadata.json").read_text())["labels"] == tiny_bundle.labels
    loaded = tf.saved_model.load(str(folder))
    assert set(loaded.signatures) == {"serving_default", "serving_pixels"}
    inputs = loaded.signatures["serving_default"].structured_input_signature[1]
    assert inputs["image_bytes"].dtype == tf.string


def test_savedmodel_probabilities_match_keras_on_png_images(tiny_bundle: Bundle, exported):
    size = tiny_bundle.image_size
    images = _pngs(size)
    serve = tf.saved_model.load(str(exported["savedmodel"])).signatures["serving_default"]
    result = serve(image_bytes=tf.constant(list(images.values())))
    expected = _keras(tiny_bundle, np.stack([load_image(d, size) for d in images.values()]))
    np.testing.assert_allclose(result["probabilities"].numpy(), expected, rtol=0, atol=TOLERANCE)
    labels = [label.decode() for label in result["labels"].numpy()]
    assert labels == [tiny_bundle.labels[i] for i in expected.argmax(axis=1)]


def test_savedmodel_on_jpeg_images_is_close(tiny_bundle: Bundle, exported):
    """JPEG goes through TensorFlow's libjpeg, not Pillow's; same draft scaling and DCT."""
    size = tiny_bundle.image_size
    images = [
        _encode(_noise(width, height, seed), "JPEG", quality=90)
        for width, height, seed in [(24, 16, 1), (200, 150, 2), (97, 203, 3)]
    ]
    serve = tf.saved_model.load(str(exported["savedmodel"])).signatures["serving_default"]
    result = serve(image_bytes=tf.constant(images))["probabilities"].numpy()
    expected = _keras(tiny_bundle, np.stack([load_image(d, size) for d in images]))
    np.testing.assert_allclose(result, expected, rtol=0, atol=TOLERANCE)


def _pixels(bundle: Bundle) -> np.ndarray:
    height, width = bundle.image_size
    return np.random.default_rng(9).integers(0, 256, (3, height, width, 3), dtype=np.uint8)


def test_savedmodel_pixel_signature(tiny_bundle: Bundle, exported):
    serve = tf.saved_model.load(str(exported["savedmodel"])).signatures["serving_pixels"]
    pixels = _pixels(tiny_bundle)
    result = serve(pixels=tf.constant(pixels))["probabilities"].numpy()
    np.testing.assert_allclose(result, _keras(tiny_bundle, pixels), rtol=0, atol=TOLERANCE)


def test_onnx_probabilities_match_keras(tiny_bundle: Bundle, exported):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    if "onnx" not in exported:
        pytest.skip("tf2onnx is not installed: ktl export --format onnx needs it")
    path = exported["onnx"]
    assert path.name == "model.onnx" and path.parent == exported["savedmodel"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [model_input] = session.get_inputs()
    assert model_input.name == "pixels" and model_input.type == "tensor(uint8)"
    pixels = _pixels(tiny_bundle)
    [result] = session.run(["probabilities"], {"pixels": pixels})
    np.testing.assert_allclose(result, _keras(tiny_bundle, pixels), rtol=0, atol=TOLERANCE)


def _tflite_interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        pytest.skip("ai-edge-litert is not installed (tf.lite.Interpreter is deprecated)")
    return Interpreter(model_path=str(path))


def test_tflite_probabilities_match_keras(tiny_bundle: Bundle, exported):
    interpreter = _tflite_interpreter(exported["tflite"])
    runner = interpreter.get_signature_runner()
    pixels = _pixels(tiny_bundle)
    result = runner(pixels=pixels)["probabilities"]
    np.testing.assert_allclose(result, _keras(tiny_bundle, pixels), rtol=0, atol=TOLERANCE)


def test_unknown_format_and_an_out_folder_inside_the_store_are_refused(
    tiny_bundle: Bundle, tmp_path: Path
):
    with pytest.raises(ExportError, match="savedmodel, onnx, tflite"):
        export_bundle(tiny_bundle, "pickle", tmp_path)
    with pytest.raises(ExportError, match="inside the model store"):
        check_outside_store(tmp_path / "store" / "exports", tmp_path / "store")
    check_outside_store(tmp_path / "exports", tmp_path / "store")
