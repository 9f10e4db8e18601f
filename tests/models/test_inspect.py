from __future__ import annotations

import pytest

from models.insight.inspect import (
    CONVOLUTIONS,
    POOLINGS,
    explicit_padding,
    inspect_backbone,
    inspect_model,
    output_size,
    render_text,
)
from models.networks.backbones import get_backbone
from tests.models.conftest import IMAGE_SIZE, make_tiny_model

WINDOWS = (*CONVOLUTIONS, *POOLINGS, "ZeroPadding2D")


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("vgg16", 224),
        pytest.param("resnet50", 224, marks=pytest.mark.slow),
        ("resnet50", 67),  # odd sizes exercise every rounding rule
        ("lenet5", 32),
        ("alexnet", 227),
        ("zfnet", 224),
        ("zfnet", 61),
        pytest.param("inceptionv3", 299, marks=pytest.mark.slow),
        ("inceptionv3", 91),
        ("smallcnn", 27),
    ],
)
def test_the_formula_gives_what_keras_builds(name, size):
    _, report = inspect_backbone(name, size)
    windows = [row for row in report["layers"] if row["type"] in WINDOWS]
    assert windows
    for row in windows:
        assert row["formula"] == row["output_shape"][:2], row
    assert report["total_params"] == get_backbone(name).params


def test_vgg16_figures_match_the_api_document():
    _, report = inspect_backbone("vgg16")
    assert report["backbone"] == "vgg16" and report["image_size"] == [224, 224]
    assert report["total_params"] == report["trainable_params"] == 14_714_688
    conv1 = next(row for row in report["layers"] if row["name"] == "block1_conv1")
    assert {
        "type": "Conv2D", "kernel": [3, 3], "strides": [1, 1], "padding": "same",
        "pad": [[1, 1], [1, 1]], "filters": 64, "output_shape": [224, 224, 64], "params": 1792,
    }.items() <= conv1.items()  # fmt: skip
    comparison = report["fully_connected_comparison"]
    assert comparison["dense_weights"] == 224 * 224 * 3 * 224 * 224 * 64
    assert comparison["conv_weights"] == 3 * 3 * 3 * 64


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "expected", "pads"),
    [
        (224, 3, 1, "same", 224, (1, 1)),
        (227, 11, 4, "valid", 55, (0, 0)),
        (110, 3, 2, "same", 55, (0, 1)),
        (5, 2, 2, "same", 3, (0, 1)),
        (7, 1, 2, "same", 4, (0, 0)),
        (224, 7, 2, (3, 3), 112, (3, 3)),
    ],
)
def test_output_size_and_padding_rules(size, kernel, stride, padding, expected, pads):
    assert output_size(size, kernel, stride, padding) == expected
    assert explicit_padding(size, kernel, stride, padding) == pads


def test_a_bundle_model_is_expanded_and_frozen_weights_are_counted():
    model = make_tiny_model()
    model.get_layer("smallcnn").get_layer("block1_conv1").trainable = False
    report = inspect_model(model)
    names = [row["name"] for row in report["layers"]]
    assert names[:3] == ["image", "preprocess", "block1_conv1"]
    assert "smallcnn" not in names and names[-1] == "predictions"
    assert {row["parent"] for row in report["layers"] if row["name"].startswith("block")} == {
        "smallcnn"
    }
    assert report["total_params"] == model.count_params()
    bn_statistics = 2 * (32 * 2 + 64 * 2 + 128 * 2)
    assert report["non_trainable_params"] == 3 * 3 * 3 * 32 + bn_statistics
    assert report["layers"][2]["output_shape"] == [*IMAGE_SIZE, 32]
    text = render_text({"model": "tiny", "version": 1, "image_size": list(IMAGE_SIZE), **report})
    assert "block1_conv1" in text and "same P=1" in text and "!= Keras" not in text
