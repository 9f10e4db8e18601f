"""Seeing what a network looks at: Grad-CAM heatmaps, feature maps of any layer,
and ZFNet's deconvnet projection of a strong activation back to pixel space.

Everything takes a loaded ``keras.Model`` (a bundle's: raw RGB 0..255 in,
probabilities out, the backbone nested inside) and a ``(height, width, 3)``
array of pixels at the model's size; the PNG renderers at the end need only
NumPy and Pillow.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from models.errors import UserError
from models.inspect import CONVOLUTIONS, flatten_layers
from models.layers import _TORCH_STD, BackbonePreprocessing
from models.unpooling import MaxPoolingWithArgmax2D, MaxUnpooling2D

MAX_TILES = 64
DECONVNET_ARCHITECTURES = "smallcnn, lenet5, alexnet, zfnet, vgg16, vgg19"


class ExplainError(UserError):
    """A question the model cannot answer: an unknown layer or class, or an
    architecture a method does not support."""


def resolve_class(labels: list[str], value: str | None) -> int | None:
    """A class given as a label, else as an index into the labels; None stays None."""
    if value is None:
        return None
    if value in labels:
        return labels.index(value)
    if value.isdigit() and int(value) < len(labels):
        return int(value)
    raise ExplainError(
        f"Unknown class {value[:40]!r}: give a label ({', '.join(labels)}) or an index "
        f"0..{len(labels) - 1}"
    )


def _sources(layer: keras.layers.Layer) -> list:
    """The layers whose outputs feed ``layer`` (in the graph that holds it)."""
    node = layer._inbound_nodes[-1]
    return [tensor._keras_history.operation for tensor in node.input_tensors]


def _is_chain(layers: list[keras.layers.Layer]) -> keras.layers.Layer | None:
    """None when each layer takes exactly the previous one's output; else the
    first layer that does not."""
    for previous, layer in zip(layers, layers[1:], strict=False):
        if _sources(layer) != [previous]:
            return layer
    return None


def activation_layers(model: keras.Model) -> list[str]:
    """Names of the layers whose feature maps can be shown: every layer with a
    ``(height, width, channels)`` output, nested ones included, the input and the
    preprocessing left out."""
    return [
        layer.name
        for layer, _ in flatten_layers(model)
        if not isinstance(layer, keras.layers.InputLayer | BackbonePreprocessing)
        and len(layer.output.shape) == 4
    ]


def _check_layer(model: keras.Model, name: str) -> None:
    valid = activation_layers(model)
    if name not in valid:
        raise ExplainError(
            f"No layer {name!r} with feature maps; choose one of: {', '.join(valid)}"
        )


def _container(model: keras.Model, name: str) -> keras.Model:
    """The model (``model`` itself or a nested one) that holds the layer ``name``."""
    for layer, parent in flatten_layers(model):
        if layer.name == name:
            return model if parent is None else _nested(model, parent)
    raise ExplainError(f"The model has no layer {name!r}")


def _nested(model: keras.Model, name: str) -> keras.Model:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if layer.name == name:
                return layer
            try:
                return _nested(layer, name)
            except LookupError:
                continue
    raise LookupError(name)


def _scores(layer: keras.layers.Layer, x):
    """The last layer's output, before its softmax when it has one: Grad-CAM
    differentiates class scores, which a saturated softmax would flatten."""
    if isinstance(layer, keras.layers.Dense) and layer.activation is keras.activations.softmax:
        logits = tf.matmul(x, layer.kernel)
        return logits + layer.bias if layer.use_bias else logits
    return layer(x, training=False)


def _tap(model: keras.Model, name: str) -> Callable:
    """``f(pixels) -> (output of layer name, class scores)``, in one forward pass."""
    container = _container(model, name)
    last = model.layers[-1]
    if container is model:
        sub = keras.Model(model.inputs, [model.get_layer(name).output, last.input])

        def run(x):
            tapped, penultimate = sub(x, training=False)
            return tapped, _scores(last, penultimate)

        return run
    top = model.layers
    if _is_chain(top) is not None:
        raise ExplainError(
            f"{model.name}: layers of a nested model can be reached only when the outer model "
            "is one chain of layers, as a bundle's is"
        )
    inner = keras.Model(container.inputs, [container.get_layer(name).output, container.output])

    def run(x):
        tapped = None
        for layer in top[1:-1]:
            if layer is container:
                tapped, x = inner(x, training=False)
            else:
                x = layer(x, training=False)
        return tapped, _scores(last, x)

    return run


def _batch(pixels: np.ndarray) -> tf.Tensor:
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[0] != 1 or pixels.shape[-1] != 3:
        raise ValueError(f"Expected one (height, width, 3) image; got shape {pixels.shape}")
    return tf.convert_to_tensor(pixels, tf.float32)


def gradcam_layer(model: keras.Model) -> str:
    """The feature map Grad-CAM weighs: the last layer whose output has the height and
    width of the last convolution's (its activation, or a block's merged output)."""
    layers = [layer for layer, _ in flatten_layers(model)]
    convs = [layer for layer in layers if type(layer).__name__ in CONVOLUTIONS]
    if not convs:
        raise ExplainError(f"{model.name} has no convolution layer: Grad-CAM needs one")
    size = tuple(convs[-1].output.shape[1:3])
    after = layers[layers.index(convs[-1]) :]
    return [
        layer.name
        for layer in after
        if len(layer.output.shape) == 4 and tuple(layer.output.shape[1:3]) == size
    ][-1]


def class_scores(model: keras.Model, pixels: np.ndarray) -> np.ndarray:
    """The model's output for one image, probabilities for a bundle."""
    return model(_batch(pixels), training=False).numpy()[0]


def gradcam(
    model: keras.Model, pixels: np.ndarray, class_index: int | None = None, layer: str | None = None
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): the feature maps of ``layer`` (default
    ``gradcam_layer``) weighted by the mean gradient of the class score, ReLU,
    scaled to 0..1; shape ``(h, w)`` of that layer. ``class_index`` defaults to the
    predicted class."""
    layer = layer or gradcam_layer(model)
    run = _tap(model, layer)
    x = _batch(pixels)
    with tf.GradientTape() as tape:
        feature_maps, scores = run(x)
        classes = int(scores.shape[-1])
        if class_index is None:
            class_index = int(tf.argmax(scores[0]))
        elif not 0 <= class_index < classes:
            raise ExplainError(
                f"Class index {class_index} is out of range: the model has {classes}"
            )
        score = scores[:, class_index]
    gradients = tape.gradient(score, feature_maps)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(feature_maps * weights, axis=-1))[0].numpy()
    peak = cam.max()
    return cam / peak if peak > 0 else cam


def activations(model: keras.Model, pixels: np.ndarray, layer: str) -> np.ndarray:
    """The ``(h, w, channels)`` feature maps of ``layer`` for one image."""
    _check_layer(model, layer)
    tapped, _ = _tap(model, layer)(_batch(pixels))
    return tapped.numpy()[0]


def first_conv_kernel(model: keras.Model) -> tuple[str, np.ndarray]:
    """The first convolution's name and kernel, ``(kh, kw, in_channels, filters)``."""
    for layer, _ in flatten_layers(model):
        if type(layer).__name__ in CONVOLUTIONS:
            return layer.name, keras.ops.convert_to_numpy(layer.weights[0])
    raise ExplainError(f"{model.name} has no convolution layer")


# --- deconvnet ---------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """A deconvnet reconstruction in the input's pixel space (raw, signed), and the
    activation it comes from: ``position`` is (row, column) in ``layer``'s map."""

    reconstruction: np.ndarray
    layer: str
    filter: int
    position: tuple[int, int]
    activation: float

    def image(self) -> np.ndarray:
        """The reconstruction as an RGB image in 0..1, grey at zero (ZFNet's figures)."""
        peak = float(np.abs(self.reconstruction).max())
        scaled = self.reconstruction / peak if peak > 0 else self.reconstruction
        return np.clip(0.5 + 0.5 * scaled, 0.0, 1.0)


def _activation_name(layer: keras.layers.Layer) -> str:
    return getattr(layer.activation, "__name__", str(layer.activation))


def _unsupported(layer: keras.layers.Layer, why: str) -> ExplainError:
    return ExplainError(
        f"deconvnet projects through plain stacks of convolutions, BatchNorm, ReLU (or tanh) "
        f"and pooling ({DECONVNET_ARCHITECTURES}); layer {layer.name!r} "
        f"({type(layer).__name__}) {why}. Use --method gradcam for this model."
    )


def _deconv_chain(model: keras.Model, target: str) -> list[keras.layers.Layer]:
    """The layers from the input to ``target``, checked to form one chain."""
    container = _container(model, target)
    if container is model:
        outer, inner = model.layers[: _index(model, target) + 1], []
    elif container in model.layers:
        outer = model.layers[: model.layers.index(container) + 1]
        inner = container.layers[: _index(container, target) + 1]
    else:
        raise ExplainError(f"deconvnet reaches one level of nested models; {target!r} is deeper")
    for part in (outer, inner):
        broken = _is_chain(part)
        if broken is not None:
            raise _unsupported(broken, "does not take the previous layer's output (a branch)")
    chain: list[keras.layers.Layer] = []
    for layer in outer:
        if layer is container:
            chain.extend(inner[1:])
        elif not isinstance(layer, keras.layers.InputLayer):
            chain.append(layer)
    return chain


def _index(container: keras.Model, name: str) -> int:
    return [layer.name for layer in container.layers].index(name)


_ELEMENTWISE = {"relu", "linear", "tanh"}


def deconvnet(
    model: keras.Model,
    pixels: np.ndarray,
    layer: str | None = None,
    filter_index: int | None = None,
) -> Projection:
    """Zeiler & Fergus 2013: keep only the strongest activation of ``layer`` (default:
    the last convolution; within ``filter_index`` if given), then map it back to
    pixels through the same filters transposed, ReLU, and max unpooling at the
    switches recorded on the way up. BatchNorm contributes its scale; tanh and
    linear activations pass the signal unchanged; average pooling spreads it."""
    if layer is None:
        convs = [lyr.name for lyr, _ in flatten_layers(model) if type(lyr).__name__ == "Conv2D"]
        if not convs:
            raise ExplainError(f"{model.name} has no convolution layer")
        layer = convs[-1]
    chain = _deconv_chain(model, layer)
    x = _batch(pixels)
    steps: list[tuple] = []  # what the way down needs, in the order of the way up
    for lyr in chain:
        kind = type(lyr).__name__
        if isinstance(lyr, BackbonePreprocessing):
            steps.append(("preprocess", lyr.mode))
        elif kind == "Conv2D":
            activation = _activation_name(lyr)
            if lyr.groups != 1 or tuple(lyr.dilation_rate) != (1, 1):
                raise _unsupported(lyr, "is grouped or dilated")
            if activation not in _ELEMENTWISE:
                raise _unsupported(lyr, f"has activation {activation!r}")
            steps.append(("conv", lyr, tf.shape(x), activation))
        elif kind == "BatchNormalization":
            scale = 1.0 / tf.sqrt(lyr.moving_variance + lyr.epsilon)
            steps.append(("scale", scale * lyr.gamma if lyr.scale else scale))
        elif kind == "ReLU" or (kind == "Activation" and _activation_name(lyr) in _ELEMENTWISE):
            steps.append(("act", "relu" if kind == "ReLU" else _activation_name(lyr)))
        elif kind == "MaxPooling2D":
            pool = MaxPoolingWithArgmax2D(lyr.pool_size, lyr.strides, lyr.padding)
            pooled, argmax = pool(x)
            steps.append(("unpool", lyr, argmax, x))
            x = pooled
            continue
        elif kind == "AveragePooling2D":
            steps.append(("avgpool", lyr, tf.shape(x)))
        elif kind == "ZeroPadding2D":
            steps.append(("crop", lyr.padding))
        elif kind not in ("Dropout", "SpatialDropout2D"):
            raise _unsupported(lyr, "has no deconvnet inverse here")
        x = lyr(x, training=False)

    maps = x[0].numpy()
    if maps.ndim != 3:
        raise ExplainError(f"Layer {layer!r} has no feature maps to project")
    if filter_index is not None and not 0 <= filter_index < maps.shape[-1]:
        raise ExplainError(f"Layer {layer!r} has {maps.shape[-1]} filters; got {filter_index}")
    search = maps if filter_index is None else maps[..., filter_index : filter_index + 1]
    row, col, channel = np.unravel_index(int(np.argmax(search)), search.shape)
    channel = channel if filter_index is None else filter_index
    signal = np.zeros_like(maps)[None]
    signal[0, row, col, channel] = maps[row, col, channel]
    s = tf.convert_to_tensor(signal)

    for step in reversed(steps):
        kind = step[0]
        if kind == "conv":
            _, lyr, in_shape, activation = step
            if activation == "relu":
                s = tf.nn.relu(s)
            s = tf.nn.conv2d_transpose(
                s, lyr.kernel, in_shape, (1, *lyr.strides, 1), lyr.padding.upper()
            )
        elif kind == "act":
            s = tf.nn.relu(s) if step[1] == "relu" else s
        elif kind == "scale":
            s = s * step[1]
        elif kind == "unpool":
            _, lyr, argmax, reference = step
            s = MaxUnpooling2D(lyr.pool_size, lyr.strides, lyr.padding)([s, argmax, reference])
        elif kind == "avgpool":
            _, lyr, in_shape = step
            s = tf.raw_ops.AvgPoolGrad(
                orig_input_shape=in_shape, grad=s, ksize=(1, *lyr.pool_size, 1),
                strides=(1, *lyr.strides, 1), padding=lyr.padding.upper(),
            )  # fmt: skip
        elif kind == "crop":
            (top, bottom), (left, right) = step[1]
            height, width = s.shape[1], s.shape[2]
            s = s[:, top : height - bottom, left : width - right, :]
        elif kind == "preprocess":
            s = _preprocessing_transpose(step[1], s)
    return Projection(
        s[0].numpy(), layer, int(channel), (int(row), int(col)), float(maps[row, col, channel])
    )


def _preprocessing_transpose(mode: str, s: tf.Tensor) -> tf.Tensor:
    """The transpose of the preprocessing's linear part (shifts have none)."""
    if mode == "caffe":
        return tf.reverse(s, axis=[-1])  # BGR back to RGB
    if mode == "torch":
        return s / (255.0 * tf.constant(_TORCH_STD, s.dtype))
    factor = {"tf": 1 / 127.5, "unit": 1 / 255.0}.get(mode, 1.0)
    return s * factor


# --- rendering -----------------------------------------------------------------


def jet(values: np.ndarray) -> np.ndarray:
    """The jet colour map (blue, cyan, yellow, red) of values in 0..1, as uint8 RGB."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * v - np.array([3.0, 2.0, 1.0], np.float32)), 0.0, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _upscaled(image: Image.Image, min_side: int, resample=Image.Resampling.BICUBIC) -> Image.Image:
    factor = max(1, math.ceil(min_side / min(image.size)))
    return image.resize((image.width * factor, image.height * factor), resample)


def overlay_png(
    pixels: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45, min_side: int = 224
) -> bytes:
    """The image with the heatmap in jet colours over it, scaled up to ``min_side``."""
    base = _upscaled(Image.fromarray(np.asarray(pixels, np.uint8)), min_side)
    heat = Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8))
    heat = heat.resize(base.size, Image.Resampling.BILINEAR)
    coloured = Image.fromarray(jet(np.asarray(heat, np.float32) / 255.0))
    return _png(Image.blend(base, coloured, alpha))


def _grid(tiles: list[np.ndarray], tile_side: int, gap: int = 2) -> Image.Image:
    """uint8 tiles (grey or RGB) in a near-square grid on white, each scaled up
    (nearest, so pixels stay visible) to about ``tile_side``."""
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].shape[:2]
    factor = max(1, round(tile_side / max(height, width)))
    th, tw = height * factor, width * factor
    sheet = Image.new("RGB", (columns * (tw + gap) + gap, rows * (th + gap) + gap), "white")
    for index, tile in enumerate(tiles):
        image = Image.fromarray(tile).convert("RGB").resize((tw, th), Image.Resampling.NEAREST)
        row, column = divmod(index, columns)
        sheet.paste(image, (gap + column * (tw + gap), gap + row * (th + gap)))
    return sheet


def _normalised(array: np.ndarray) -> np.ndarray:
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return (scaled * 255).round().astype(np.uint8)


def activation_grid_png(maps: np.ndarray, *, limit: int = MAX_TILES, tile_side: int = 48) -> bytes:
    """One grey tile per channel of ``(h, w, channels)`` maps (the first ``limit``),
    each scaled to its own range."""
    tiles = [_normalised(maps[..., c]) for c in range(min(maps.shape[-1], limit))]
    return _png(_grid(tiles, tile_side))


def filter_grid_png(kernel: np.ndarray, *, limit: int = MAX_TILES, tile_side: int = 40) -> bytes:
    """First-layer filters ``(kh, kw, in, out)`` as tiles: colour when they take RGB,
    else their first input channel in grey; each filter scaled to its own range."""
    count = min(kernel.shape[-1], limit)
    if kernel.shape[2] == 3:
        tiles = [_normalised(kernel[..., f]) for f in range(count)]
    else:
        tiles = [_normalised(kernel[:, :, 0, f]) for f in range(count)]
    return _png(_grid(tiles, tile_side))


def projection_png(pixels: np.ndarray, projection: Projection, *, min_side: int = 224) -> bytes:
    """The image and its deconvnet reconstruction side by side."""
    left = _upscaled(Image.fromarray(np.asarray(pixels, np.uint8)), min_side)
    right = Image.fromarray((projection.image() * 255).round().astype(np.uint8))
    right = right.resize(left.size, Image.Resampling.NEAREST)
    sheet = Image.new("RGB", (left.width * 2 + 4, left.height), "white")
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width + 4, 0))
    return _png(sheet)
