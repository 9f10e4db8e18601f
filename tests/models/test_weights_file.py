"""``--weights PATH`` with a file laid out like the official ImageNet downloads."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from models.networks.backbones import get_backbone
from models.networks.classifier import WeightsError, build_backbone, resolve_weights
from tests.legacy_h5 import legacy_weight_names, write_legacy_h5

SIZE = (32, 32)


def _randomised(name: str, seed: int) -> keras.Model:
    """The backbone with every weight, BatchNorm statistics included, set at random."""
    model = get_backbone(name).build((*SIZE, 3), None)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(weight.dtype))
    return model


def _file_weights(path) -> dict[str, np.ndarray]:
    """Every dataset of a legacy file by its ``layer/weight:0`` name, read with h5py."""
    found = {}
    with h5py.File(path, "r") as f:
        for layer_name in f.attrs["layer_names"]:
            group = f[layer_name.decode()]
            for weight_name in group.attrs["weight_names"]:
                found[weight_name.decode()] = np.asarray(group[weight_name.decode()])
    return found


def _model_weights(model: keras.Model) -> dict[str, np.ndarray]:
    return {
        name: keras.ops.convert_to_numpy(weight)
        for layer in model.layers
        for name, weight in zip(
            legacy_weight_names(layer),
            layer.trainable_weights + layer.non_trainable_weights,
            strict=True,
        )
    }


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("resnet50", marks=pytest.mark.slow),
        "vgg16",
        "mobilenetv3small",
        "efficientnetv2b0",
        "smallcnn",
    ],
)
def test_weights_file_loads_every_weight_exactly(tmp_path, name):
    path = tmp_path / f"{name}_notop.h5"
    write_legacy_h5(_randomised(name, seed=1), path)
    spec = get_backbone(name)

    loaded = build_backbone(spec, SIZE, resolve_weights(spec, str(path)))

    in_file = _file_weights(path)
    in_model = _model_weights(loaded)
    assert in_model.keys() == in_file.keys()
    assert len(in_file) == len(loaded.weights)
    fresh = _model_weights(spec.build((*SIZE, 3), None))
    for weight_name, value in in_file.items():
        np.testing.assert_array_equal(in_model[weight_name], value, err_msg=weight_name)
        assert not np.array_equal(fresh[weight_name], value), weight_name


def test_file_layout_matches_the_official_downloads(tmp_path):
    path = tmp_path / "resnet50.h5"
    model = get_backbone("resnet50").build((*SIZE, 3), None)
    write_legacy_h5(model, path)
    with h5py.File(path, "r") as f:
        assert {"layer_names", "backend", "keras_version"} <= set(f.attrs)
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names == [layer.name for layer in model.layers]
        conv = f["conv1_conv"]
        assert [n.decode() for n in conv.attrs["weight_names"]] == [
            "conv1_conv/kernel:0",
            "conv1_conv/bias:0",
        ]
        assert conv["conv1_conv"]["kernel:0"].shape == (7, 7, 3, 64)
        bn = [n.decode() for n in f["conv1_bn"].attrs["weight_names"]]
        statistics = ("gamma", "beta", "moving_mean", "moving_variance")
        assert bn == [f"conv1_bn/{w}:0" for w in statistics]
        assert len(f[names[0]].attrs["weight_names"]) == 0  # the input layer has no weights


def test_a_file_works_at_another_image_size(tmp_path):
    path = tmp_path / "vgg16.h5"
    write_legacy_h5(_randomised("vgg16", seed=2), path)
    loaded = build_backbone(get_backbone("vgg16"), (48, 64), str(path))
    assert loaded.input_shape == (None, 48, 64, 3)
    np.testing.assert_array_equal(
        _model_weights(loaded)["block1_conv1/kernel:0"],
        _file_weights(path)["block1_conv1/kernel:0"],
    )


def test_a_file_for_another_architecture_is_a_weights_error(tmp_path):
    path = tmp_path / "vgg16_weights.h5"
    write_legacy_h5(get_backbone("vgg16").build((*SIZE, 3), None), path)
    with pytest.raises(WeightsError) as caught:
        build_backbone(get_backbone("resnet50"), SIZE, str(path))
    message = str(caught.value)
    assert str(path) in message
    assert "resnet50" in message
    assert "layer" in message.lower()  # says what does not match


def test_a_file_that_is_not_hdf5_is_a_weights_error(tmp_path):
    path = tmp_path / "resnet50_notop.h5"
    path.write_bytes(b"<html>403 Forbidden</html>")
    with pytest.raises(WeightsError, match="resnet50_notop.h5"):
        build_backbone(get_backbone("resnet50"), SIZE, str(path))
