"""BackbonePreprocessing: the same numbers as keras.applications, and it survives safe_mode."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from models.networks.layers import PREPROCESSING_MODES, BackbonePreprocessing


def _torch(x: np.ndarray) -> np.ndarray:
    return keras.applications.densenet.preprocess_input(x)


def _caffe(x: np.ndarray) -> np.ndarray:
    return keras.applications.vgg16.preprocess_input(x)


def _tf(x: np.ndarray) -> np.ndarray:
    return keras.applications.resnet_v2.preprocess_input(x)


def _efficientnet(x: np.ndarray) -> np.ndarray:
    return keras.applications.efficientnet.preprocess_input(x)


REFERENCE = {
    "caffe": _caffe,
    "tf": _tf,
    "torch": _torch,
    "unit": lambda x: x / 255.0,
    "raw": _efficientnet,  # a pass-through: EfficientNet normalises inside itself
    # EfficientNet-Lite's TF checkpoints: MEAN_RGB 127, STDDEV_RGB 128 in Google's own code
    "lite": lambda x: (x - 127.0) / 128.0,
}


def _pixels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (4, 9, 7, 3)).astype("float32")


def test_every_mode_has_a_reference():
    assert sorted(REFERENCE) == sorted(PREPROCESSING_MODES)


@pytest.mark.parametrize("mode", PREPROCESSING_MODES)
def test_matches_keras_applications_preprocess_input(mode):
    pixels = _pixels()
    expected = REFERENCE[mode](pixels.copy())  # preprocess_input edits its argument
    result = keras.ops.convert_to_numpy(BackbonePreprocessing(mode)(pixels))
    np.testing.assert_allclose(result, expected, atol=1e-4, rtol=0)


def test_modes_differ():
    pixels = _pixels(1)
    outputs = {
        mode: keras.ops.convert_to_numpy(BackbonePreprocessing(mode)(pixels))
        for mode in PREPROCESSING_MODES
    }
    for a in PREPROCESSING_MODES:
        for b in PREPROCESSING_MODES:
            if a < b:
                assert not np.allclose(outputs[a], outputs[b]), (a, b)


def test_integer_pixels_are_accepted():
    pixels = np.random.default_rng(2).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    result = keras.ops.convert_to_numpy(BackbonePreprocessing("caffe")(pixels))
    expected = _caffe(pixels.astype("float32"))
    np.testing.assert_allclose(result, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("mode", PREPROCESSING_MODES)
def test_round_trip_through_a_keras_file_in_safe_mode(tmp_path, mode):
    inputs = keras.Input((9, 7, 3))
    outputs = BackbonePreprocessing(mode, name="preprocess")(inputs)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.saving.load_model(path, safe_mode=True)

    layer = loaded.get_layer("preprocess")
    assert isinstance(layer, BackbonePreprocessing)
    assert layer.mode == mode
    pixels = _pixels(3)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(pixels)),
        REFERENCE[mode](pixels.copy()),
        atol=1e-4,
        rtol=0,
    )


def test_config_round_trip():
    layer = BackbonePreprocessing("torch", name="p")
    clone = BackbonePreprocessing.from_config(layer.get_config())
    assert (clone.mode, clone.name) == ("torch", "p")


def test_output_shape_is_the_input_shape():
    assert BackbonePreprocessing("tf").compute_output_shape((None, 5, 6, 3)) == (None, 5, 6, 3)


@pytest.mark.parametrize("mode", ["CAFFE", "imagenet", "", None])
def test_unknown_mode_is_a_value_error_quoting_it(mode):
    with pytest.raises(ValueError, match=re.escape(repr(mode))):
        BackbonePreprocessing(mode)
