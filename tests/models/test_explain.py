from __future__ import annotations

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from models.insight import deconvnet, explain
from models.insight.classic import zfnet
from models.insight.explain import ExplainError
from tests.models.conftest import IMAGE_SIZE, make_tiny_model


@pytest.fixture(scope="module")
def tiny() -> keras.Model:
    return make_tiny_model()


@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (*IMAGE_SIZE, 3)).astype(np.uint8)


def test_activation_layers_are_the_feature_maps_inside_the_backbone(tiny):
    names = explain.activation_layers(tiny)
    assert names[0] == "block1_conv1" and names[-1] == "block3_pool"
    assert not {"image", "preprocess", "pool", "predictions"} & set(names)


def test_activations_are_the_layers_output(tiny, pixels):
    maps = explain.activations(tiny, pixels, "block2_conv1_relu")
    backbone = tiny.get_layer("smallcnn")
    probe = keras.Model(backbone.inputs, backbone.get_layer("block2_conv1_relu").output)
    expected = probe(tiny.get_layer("preprocess")(pixels[None].astype(np.float32)))
    np.testing.assert_allclose(maps, expected.numpy()[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ExplainError, match="choose one of: block1_conv1"):
        explain.activations(tiny, pixels, "nope")


def test_gradcam_picks_the_last_convolutions_activation(tiny, pixels):
    assert explain.gradcam_layer(tiny) == "block3_conv2_relu"
    heatmap = explain.gradcam(tiny, pixels, class_index=1)
    assert heatmap.shape == (IMAGE_SIZE[0] // 4, IMAGE_SIZE[1] // 4)
    assert heatmap.min() >= 0 and heatmap.max() <= 1
    with pytest.raises(ExplainError, match="out of range"):
        explain.gradcam(tiny, pixels, class_index=3)


def linear_net() -> keras.Model:
    keras.utils.set_random_seed(2)
    inputs = keras.Input((12, 10, 3))
    x = keras.layers.ZeroPadding2D(1)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, name="c1")(x)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)
    x = keras.layers.Conv2D(5, 3, padding="same", name="c2")(x)
    return keras.Model(inputs, x)


def test_deconvnet_of_a_linear_network_is_the_gradient():
    # Without ReLU, a deconvnet is the gradient of the chosen activation, scaled by it:
    # transposed convolutions and unpooling at the switches are exactly backprop.
    model = linear_net()
    x = tf.convert_to_tensor(np.random.default_rng(3).random((1, 12, 10, 3)), tf.float32)
    projection = deconvnet.deconvnet(model, x[0].numpy(), layer="c2")
    row, column = projection.position
    with tf.GradientTape() as tape:
        tape.watch(x)
        unit = model(x)[0, row, column, projection.filter]
    gradient = tape.gradient(unit, x)[0].numpy()
    assert projection.activation == pytest.approx(float(unit), rel=1e-5)
    assert projection.activation == pytest.approx(float(model(x).numpy().max()), rel=1e-5)
    np.testing.assert_allclose(projection.reconstruction, unit.numpy() * gradient, atol=1e-5)


def test_deconvnet_stays_inside_the_receptive_field(pixels):
    model = zfnet((64, 64, 3), None)
    image = np.random.default_rng(4).integers(0, 256, (64, 64, 3)).astype(np.float32)
    projection = deconvnet.deconvnet(model, image, layer="conv1", filter_index=5)
    assert projection.filter == 5
    row, column = projection.position
    nonzero = np.argwhere(np.abs(projection.reconstruction).sum(axis=-1) > 0)
    assert len(nonzero)
    # conv1 sees 7x7 padded pixels from (2 * row, 2 * column); one pixel of padding.
    assert nonzero[:, 0].min() >= 2 * row - 1 and nonzero[:, 0].max() <= 2 * row + 5
    assert nonzero[:, 1].min() >= 2 * column - 1 and nonzero[:, 1].max() <= 2 * column + 5
    assert projection.image().min() >= 0 and projection.image().max() <= 1


def test_deconvnet_runs_through_a_bundle_with_batchnorm(tiny, pixels):
    projection = deconvnet.deconvnet(tiny, pixels)
    assert projection.layer == "block3_conv2"
    assert projection.reconstruction.shape == (*IMAGE_SIZE, 3)
    assert np.abs(projection.reconstruction).sum() > 0


def test_deconvnet_refuses_a_network_with_branches():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(3, 3, padding="same", name="a")(inputs)
    added = keras.layers.Add(name="skip")([inputs, a])
    b = keras.layers.Conv2D(3, 3, name="b")(added)
    model = keras.Model(inputs, b)
    with pytest.raises(ExplainError, match="'skip'.*gradcam"):
        deconvnet.deconvnet(model, np.zeros((8, 8, 3), np.float32), layer="b")


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_renderers_make_pngs_of_the_right_size(tiny, pixels):
    overlay = png(explain.overlay_png(pixels, np.eye(4, 6)))
    assert overlay.format == "PNG" and overlay.size[1] >= 224
    assert overlay.size[0] / overlay.size[1] == pytest.approx(IMAGE_SIZE[1] / IMAGE_SIZE[0])
    grid = png(explain.activation_grid_png(np.random.default_rng(0).random((4, 6, 100))))
    # 100 maps capped at 64: 8x8 tiles of 4x6 scaled by 8, 2-pixel gaps
    assert grid.size == (8 * (48 + 2) + 2, 8 * (32 + 2) + 2)
    _, kernel = explain.first_conv_kernel(tiny)
    assert kernel.shape == (3, 3, 3, 32)
    assert png(explain.filter_grid_png(kernel)).mode == "RGB"


def test_jet_runs_from_blue_to_red():
    colours = explain.jet(np.array([0.0, 0.5, 1.0]))
    assert colours[0].argmax() == 2 and colours[2].argmax() == 0
    assert colours[1][1] == 255
