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

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from models.errors import UserError
from models.insight.inspect import CONVOLUTIONS, flatten_layers
from models.networks.layers import BackbonePreprocessing

MAX_TILES = 64


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


def first_branch(layers: list[keras.layers.Layer]) -> keras.layers.Layer | None:
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


def container_of(model: keras.Model, name: str) -> keras.Model:
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
    container = container_of(model, name)
    last = model.layers[-1]
    if container is model:
        sub = keras.Model(model.inputs, [model.get_layer(name).output, last.input])

        def run_outer(x):
            tapped, penultimate = sub(x, training=False)
            return tapped, _scores(last, penultimate)

        return run_outer
    top = model.layers
    if first_branch(top) is not None:
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


def as_batch(pixels: np.ndarray) -> tf.Tensor:
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
    return model(as_batch(pixels), training=False).numpy()[0]


def gradcam(
    model: keras.Model, pixels: np.ndarray, class_index: int | None = None, layer: str | None = None
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): the feature maps of ``layer`` (default
    ``gradcam_layer``) weighted by the mean gradient of the class score, ReLU,
    scaled to 0..1; shape ``(h, w)`` of that layer. ``class_index`` defaults to the
    predicted class."""
    layer = layer or gradcam_layer(model)
    run = _tap(model, layer)
    x = as_batch(pixels)
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
    tapped, _ = _tap(model, layer)(as_batch(pixels))
    return tapped.numpy()[0]


def first_conv_kernel(model: keras.Model) -> tuple[str, np.ndarray]:
    """The first convolution's name and kernel, ``(kh, kw, in_channels, filters)``."""
    for layer, _ in flatten_layers(model):
        if type(layer).__name__ in CONVOLUTIONS:
            return layer.name, keras.ops.convert_to_numpy(layer.weights[0])
    raise ExplainError(f"{model.name} has no convolution layer")


# --- rendering -----------------------------------------------------------------


def jet(values: np.ndarray) -> np.ndarray:
    """The jet colour map (blue, cyan, yellow, red) of values in 0..1, as uint8 RGB."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * v - np.array([3.0, 2.0, 1.0], np.float32)), 0.0, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def upscaled(image: Image.Image, min_side: int, resample=Image.Resampling.BICUBIC) -> Image.Image:
    factor = max(1, math.ceil(min_side / min(image.size)))
    return image.resize((image.width * factor, image.height * factor), resample)


def overlay_png(
    pixels: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45, min_side: int = 224
) -> bytes:
    """The image with the heatmap in jet colours over it, scaled up to ``min_side``."""
    base = upscaled(Image.fromarray(np.asarray(pixels, np.uint8)), min_side)
    heat = Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8))
    heat = heat.resize(base.size, Image.Resampling.BILINEAR)
    coloured = Image.fromarray(jet(np.asarray(heat, np.float32) / 255.0))
    return png_bytes(Image.blend(base, coloured, alpha))


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
    return png_bytes(_grid(tiles, tile_side))


def filter_grid_png(kernel: np.ndarray, *, limit: int = MAX_TILES, tile_side: int = 40) -> bytes:
    """First-layer filters ``(kh, kw, in, out)`` as tiles: colour when they take RGB,
    else their first input channel in grey; each filter scaled to its own range."""
    count = min(kernel.shape[-1], limit)
    if kernel.shape[2] == 3:
        tiles = [_normalised(kernel[..., f]) for f in range(count)]
    else:
        tiles = [_normalised(kernel[:, :, 0, f]) for f in range(count)]
    return png_bytes(_grid(tiles, tile_side))
