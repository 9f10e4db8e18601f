"""Where backbone weights come from, and the shape of the classifier around a backbone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from keras.src.backend import config as keras_config
from keras.src.utils import file_utils

from models.networks.backbones import get_backbone
from models.networks.classifier import (
    WeightsError,
    WeightsUnavailable,
    build_backbone,
    build_classifier,
    keras_cache_path,
    resolve_weights,
)
from models.networks.layers import BackbonePreprocessing

ROOT = Path(__file__).resolve().parents[2]
RESNET50_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"

# -- resolve_weights ------------------------------------------------------------------------


def test_imagenet_on_a_scratch_network_is_a_weights_error():
    with pytest.raises(WeightsError, match="--weights none"):
        resolve_weights(get_backbone("smallcnn"), "imagenet")


def test_imagenet_on_a_pretrained_backbone():
    assert resolve_weights(get_backbone("resnet50"), "imagenet") == "imagenet"


def test_none_means_random_initialisation():
    assert resolve_weights(get_backbone("resnet50"), "none") is None


def test_an_existing_file_is_passed_on(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    assert resolve_weights(get_backbone("vgg16"), str(path)) == str(path)


@pytest.mark.parametrize("value", ["missing.h5", "ImageNet", "None", ""])
def test_anything_else_must_be_an_existing_file(tmp_path, value):
    with pytest.raises(WeightsError, match="no such file") as caught:
        resolve_weights(get_backbone("vgg16"), str(tmp_path / value) if value else value)
    assert "imagenet" in str(caught.value) and "none" in str(caught.value)


def test_a_folder_is_not_a_weights_file(tmp_path):
    with pytest.raises(WeightsError):
        resolve_weights(get_backbone("vgg16"), str(tmp_path))


# -- no network -----------------------------------------------------------------------------


def test_keras_cache_path_is_the_folder_keras_uses(monkeypatch, tmp_path):
    # Keras reads KERAS_HOME once, at import; the subprocess test below covers the variable.
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    assert keras_cache_path(get_backbone("resnet50")) == tmp_path / "models" / RESNET50_FILE


def test_download_failure_explains_how_to_work_offline(monkeypatch, tmp_path):
    """In-process: Keras' downloader fails as it does without a network."""
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))

    def no_network(fname, origin, *args, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno 111] Connection refused")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(WeightsUnavailable) as caught:
        build_backbone(get_backbone("vgg16"), (32, 32), "imagenet")
    message = str(caught.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message
    assert "--weights none" in message
    assert "Connection refused" in message  # the cause is not hidden


def test_a_job_sent_over_http_is_told_its_own_options_and_no_server_path(monkeypatch, tmp_path):
    """POST /v1/jobs takes no weights file: the advice names its options instead."""
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))

    def no_network(fname, origin, *args, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno 111] Connection refused")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(WeightsUnavailable) as caught:
        build_backbone(get_backbone("vgg16"), (32, 32), "imagenet", via="http")
    message = str(caught.value)
    assert '"backbone": "efficientnet_lite0"' in message and '"weights": "none"' in message
    assert "--weights" not in message and str(tmp_path) not in message


_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from models.networks.backbones import get_backbone
    from models.networks.classifier import build_backbone
    try:
        model = build_backbone(get_backbone("resnet50"), (64, 64), "imagenet")
    except Exception as exc:
        print(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
    else:
        print(json.dumps({"type": None, "params": model.count_params()}))
    """
)


@pytest.mark.slow
def test_no_network_raises_weights_unavailable(tmp_path):
    """A real run of Keras' downloader with KERAS_HOME set and every proxy refusing."""
    keras_home = tmp_path / "keras_home"
    refused = "http://127.0.0.1:9"
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in {"no_proxy", "keras_home"}
    }
    env.update(
        KERAS_HOME=str(keras_home),
        HTTPS_PROXY=refused,
        HTTP_PROXY=refused,
        https_proxy=refused,
        http_proxy=refused,
        PYTHONPATH=str(ROOT),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    run = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["type"] == "WeightsUnavailable", result  # no silent random weights
    message = result["message"]
    assert RESNET50_FILE in message
    assert str(keras_home / "models" / RESNET50_FILE) in message
    assert "--weights /path/to/" in message
    assert "--weights none" in message
    # Keras' partial download is not left behind to be mistaken for the real file.
    assert not (keras_home / "models" / RESNET50_FILE).exists()


def test_too_small_an_image_is_not_blamed_on_the_download():
    with pytest.raises(ValueError, match="at least 32") as caught:
        build_backbone(get_backbone("resnet50"), (16, 16), "imagenet")
    assert not isinstance(caught.value, WeightsUnavailable)


def test_random_initialisation_needs_no_download(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("nothing may be downloaded for --weights none")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    model = build_backbone(get_backbone("vgg16"), (32, 32), None)
    assert model.input_shape == (None, 32, 32, 3)


# -- build_classifier -----------------------------------------------------------------------


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


@pytest.fixture(scope="module")
def smallcnn_backbone() -> keras.Model:
    return build_backbone(get_backbone("smallcnn"), (24, 40), None)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_classifier_shape(smallcnn_backbone, pooling):
    spec = get_backbone("smallcnn")
    model = build_classifier(spec, smallcnn_backbone, 5, pooling=pooling)
    assert model.input_shape == (None, 24, 40, 3)
    assert model.output_shape == (None, 5)
    assert model.layers[-1].activation is keras.activations.softmax
    pool = model.get_layer("pool")
    expected = (
        keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
    )
    assert isinstance(pool, expected)
    preprocess = model.get_layer("preprocess")
    assert isinstance(preprocess, BackbonePreprocessing)
    assert preprocess.mode == spec.preprocessing
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in _all_layers(model))


def test_classifier_outputs_probabilities(smallcnn_backbone):
    model = build_classifier(get_backbone("smallcnn"), smallcnn_backbone, 4)
    pixels = np.random.default_rng(0).uniform(0, 255, (6, 24, 40, 3)).astype("float32")
    probabilities = keras.ops.convert_to_numpy(model(pixels, training=False))
    assert probabilities.shape == (6, 4)
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert probabilities.dtype == np.float32


def test_unknown_pooling(smallcnn_backbone):
    with pytest.raises(ValueError, match="'sum'"):
        build_classifier(get_backbone("smallcnn"), smallcnn_backbone, 3, pooling="sum")


def _batchnorm_backbone() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, x)


def _training_and_inference_outputs(frozen: bool) -> tuple[np.ndarray, np.ndarray]:
    backbone = _batchnorm_backbone()
    model = build_classifier(get_backbone("resnet50"), backbone, 3, dropout=0.0)
    backbone.trainable = not frozen
    pixels = np.random.default_rng(1).uniform(0, 255, (8, 8, 8, 3)).astype("float32")
    training = keras.ops.convert_to_numpy(model(pixels, training=True))
    inference = keras.ops.convert_to_numpy(model(pixels, training=False))
    return training, inference


def test_a_trainable_backbone_uses_batch_statistics_in_training():
    training, inference = _training_and_inference_outputs(frozen=False)
    assert not np.allclose(training, inference, atol=1e-6)


def test_a_frozen_backbone_keeps_batchnorm_in_inference_mode():
    """What phase 1 and the frozen BatchNorm of phase 2 rely on."""
    training, inference = _training_and_inference_outputs(frozen=True)
    np.testing.assert_allclose(training, inference, atol=1e-6)
