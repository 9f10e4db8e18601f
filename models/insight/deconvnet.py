"""DeconvNet projections (Zeiler & Fergus 2013): what in the image drives the
strongest activation of a layer, mapped back to pixels through the network's own
filters, ReLUs and max-pooling switches. For plain stacks of convolutions only;
Grad-CAM (``models.insight.explain``) explains any network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from models.insight.explain import (
    ExplainError,
    as_batch,
    container_of,
    first_branch,
    png_bytes,
    upscaled,
)
from models.insight.inspect import flatten_layers
from models.insight.unpooling import MaxPoolingWithArgmax2D, MaxUnpooling2D
from models.networks.layers import _TORCH_STD, BackbonePreprocessing

DECONVNET_ARCHITECTURES = "smallcnn, lenet5, alexnet, zfnet, vgg16, vgg19"


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
    container = container_of(model, target)
    if container is model:
        outer, inner = model.layers[: _index(model, target) + 1], []
    elif container in model.layers:
        outer = model.layers[: model.layers.index(container) + 1]
        inner = container.layers[: _index(container, target) + 1]
    else:
        raise ExplainError(f"deconvnet reaches one level of nested models; {target!r} is deeper")
    for part in (outer, inner):
        broken = first_branch(part)
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
    x, steps = _way_up(_deconv_chain(model, layer), as_batch(pixels))
    maps = x[0].numpy()
    if maps.ndim != 3:
        raise ExplainError(f"Layer {layer!r} has no feature maps to project")
    row, col, channel = _strongest(maps, layer, filter_index)
    signal = np.zeros_like(maps)[None]
    signal[0, row, col, channel] = maps[row, col, channel]
    s = _way_down(steps, tf.convert_to_tensor(signal))
    return Projection(
        s[0].numpy(), layer, int(channel), (int(row), int(col)), float(maps[row, col, channel])
    )


def _way_up(chain: list[keras.layers.Layer], x: tf.Tensor) -> tuple[tf.Tensor, list[tuple]]:
    """Run the chain, recording what the way down needs (in the order of the way up)."""
    steps: list[tuple] = []
    for lyr in chain:
        if type(lyr).__name__ == "MaxPooling2D":
            pool = MaxPoolingWithArgmax2D(lyr.pool_size, lyr.strides, lyr.padding)
            pooled, argmax = pool(x)
            steps.append(("unpool", lyr, argmax, x))
            x = pooled
            continue
        step = _step(lyr, x)
        if step is not None:
            steps.append(step)
        x = lyr(x, training=False)
    return x, steps


def _step(lyr: keras.layers.Layer, x: tf.Tensor) -> tuple | None:
    """What the way down does for one layer (None: nothing, as for dropout)."""
    kind = type(lyr).__name__
    if isinstance(lyr, BackbonePreprocessing):
        return ("preprocess", lyr.mode)
    if kind == "Conv2D":
        activation = _activation_name(lyr)
        if lyr.groups != 1 or tuple(lyr.dilation_rate) != (1, 1):
            raise _unsupported(lyr, "is grouped or dilated")
        if activation not in _ELEMENTWISE:
            raise _unsupported(lyr, f"has activation {activation!r}")
        return ("conv", lyr, tf.shape(x), activation)
    if kind == "BatchNormalization":
        scale = 1.0 / tf.sqrt(lyr.moving_variance + lyr.epsilon)
        return ("scale", scale * lyr.gamma if lyr.scale else scale)
    if kind == "ReLU" or (kind == "Activation" and _activation_name(lyr) in _ELEMENTWISE):
        return ("act", "relu" if kind == "ReLU" else _activation_name(lyr))
    if kind == "AveragePooling2D":
        return ("avgpool", lyr, tf.shape(x))
    if kind == "ZeroPadding2D":
        return ("crop", lyr.padding)
    if kind in ("Dropout", "SpatialDropout2D"):
        return None
    raise _unsupported(lyr, "has no deconvnet inverse here")


def _strongest(maps: np.ndarray, layer: str, filter_index: int | None) -> tuple[int, int, int]:
    """(row, column, channel) of the strongest activation, within one filter if given."""
    if filter_index is not None and not 0 <= filter_index < maps.shape[-1]:
        raise ExplainError(f"Layer {layer!r} has {maps.shape[-1]} filters; got {filter_index}")
    search = maps if filter_index is None else maps[..., filter_index : filter_index + 1]
    row, col, channel = np.unravel_index(int(np.argmax(search)), search.shape)
    return int(row), int(col), int(channel if filter_index is None else filter_index)


def _way_down(steps: list[tuple], s: tf.Tensor) -> tf.Tensor:
    """Project a signal in the layer's maps back to the input through the steps."""
    for step in reversed(steps):
        s = _DOWN[step[0]](s, *step[1:])
    return s


def _conv_down(s: tf.Tensor, lyr, in_shape, activation: str) -> tf.Tensor:
    if activation == "relu":
        s = tf.nn.relu(s)
    return tf.nn.conv2d_transpose(
        s, lyr.kernel, in_shape, (1, *lyr.strides, 1), lyr.padding.upper()
    )


def _unpool_down(s: tf.Tensor, lyr, argmax, reference) -> tf.Tensor:
    return MaxUnpooling2D(lyr.pool_size, lyr.strides, lyr.padding)([s, argmax, reference])


def _avgpool_down(s: tf.Tensor, lyr, in_shape) -> tf.Tensor:
    return tf.raw_ops.AvgPoolGrad(
        orig_input_shape=in_shape,
        grad=s,
        ksize=(1, *lyr.pool_size, 1),
        strides=(1, *lyr.strides, 1),
        padding=lyr.padding.upper(),
    )


def _crop_down(s: tf.Tensor, padding) -> tf.Tensor:
    (top, bottom), (left, right) = padding
    height, width = s.shape[1], s.shape[2]
    return s[:, top : height - bottom, left : width - right, :]


_DOWN: dict[str, Callable[..., tf.Tensor]] = {
    "conv": _conv_down,
    "act": lambda s, name: tf.nn.relu(s) if name == "relu" else s,
    "scale": lambda s, scale: s * scale,
    "unpool": _unpool_down,
    "avgpool": _avgpool_down,
    "crop": _crop_down,
    "preprocess": lambda s, mode: _preprocessing_transpose(mode, s),
}


def _preprocessing_transpose(mode: str, s: tf.Tensor) -> tf.Tensor:
    """The transpose of the preprocessing's linear part (shifts have none)."""
    if mode == "caffe":
        return tf.reverse(s, axis=[-1])  # BGR back to RGB
    if mode == "torch":
        return s / (255.0 * tf.constant(_TORCH_STD, s.dtype))
    factor = {"tf": 1 / 127.5, "unit": 1 / 255.0, "lite": 1 / 128.0}.get(mode, 1.0)
    return s * factor


def projection_png(pixels: np.ndarray, projection: Projection, *, min_side: int = 224) -> bytes:
    """The image and its deconvnet reconstruction side by side."""
    left = upscaled(Image.fromarray(np.asarray(pixels, np.uint8)), min_side)
    right = Image.fromarray((projection.image() * 255).round().astype(np.uint8))
    right = right.resize(left.size, Image.Resampling.NEAREST)
    sheet = Image.new("RGB", (left.width * 2 + 4, left.height), "white")
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width + 4, 0))
    return png_bytes(sheet)
