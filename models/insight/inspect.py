"""The anatomy of a network, layer by layer: kernel size F, stride S, padding P,
filters, output shape and parameters, with every convolution's and pooling's
output size worked out by ``(W - F + 2P) / S + 1`` next to what Keras reports.

Keras' padding rules: ``valid`` is P = 0 and the division rounds down; ``same``
gives ``ceil(W / S)`` by padding ``max((out - 1) * S + F - W, 0)`` pixels in
all, the odd one at the bottom or right. ``ZeroPadding2D`` is a 1x1 stride-1
window with explicit P. Nested models (a bundle's backbone) are expanded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import keras

from models.networks.backbones import get_backbone

CONVOLUTIONS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
POOLINGS = ("MaxPooling2D", "AveragePooling2D", "MaxPoolingWithArgmax2D")
PADDINGS = ("ZeroPadding2D",)


def flatten_layers(model: keras.Model) -> Iterator[tuple[keras.layers.Layer, str | None]]:
    """Every layer with the name of the nested model holding it (None at the top),
    nested models replaced by their layers (less their own input layers)."""

    def walk(container: keras.Model, parent: str | None):
        for layer in container.layers:
            if isinstance(layer, keras.Model):
                yield from walk(layer, layer.name)
            elif parent is None or not isinstance(layer, keras.layers.InputLayer):
                yield layer, parent

    yield from walk(model, None)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def output_size(size: int, kernel: int, stride: int, padding: str | tuple[int, int]) -> int:
    """``(W - F + 2P) / S + 1`` rounded down, with P from Keras' rules; ``padding``
    is "valid", "same" or explicit (before, after) pixels."""
    before, after = explicit_padding(size, kernel, stride, padding)
    return (size - kernel + before + after) // stride + 1


def explicit_padding(
    size: int, kernel: int, stride: int, padding: str | tuple[int, int]
) -> tuple[int, int]:
    """The pixels (before, after) Keras pads along one axis."""
    if isinstance(padding, tuple):
        return padding
    if padding == "valid":
        return 0, 0
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _geometry(layer: keras.layers.Layer) -> dict | None:
    """kernel, strides, padding of a window layer, in Keras' terms; None for others."""
    kind = type(layer).__name__
    if kind in CONVOLUTIONS:
        dilation = _pair(layer.dilation_rate)
        kernel = _pair(layer.kernel_size)
        # A dilated kernel covers d * (F - 1) + 1 pixels.
        effective = tuple(d * (f - 1) + 1 for d, f in zip(dilation, kernel, strict=True))
        return {
            "kernel": kernel,
            "effective": effective,
            "strides": _pair(layer.strides),
            "padding": layer.padding,
        }
    if kind in POOLINGS:
        kernel = _pair(layer.pool_size)
        return {
            "kernel": kernel,
            "effective": kernel,
            "strides": _pair(layer.strides),
            "padding": layer.padding,
        }
    if kind in PADDINGS:
        (top, bottom), (left, right) = layer.padding
        return {
            "kernel": (1, 1),
            "effective": (1, 1),
            "strides": (1, 1),
            "padding": ((top, bottom), (left, right)),
        }
    return None


def _filters(layer: keras.layers.Layer) -> int | None:
    if type(layer).__name__ == "DepthwiseConv2D":
        return int(layer.depth_multiplier * layer.input.shape[-1])
    return getattr(layer, "filters", None)


def _shape(tensor) -> list[int | None]:
    return [None if d is None else int(d) for d in tensor.shape[1:]]


def _count(weights) -> int:
    return sum(math.prod(w.shape) for w in weights)


def layer_row(layer: keras.layers.Layer, parent: str | None) -> dict:
    """One row of the report; window layers also get ``pad`` and ``formula``."""
    output = layer.output
    row = {
        "name": layer.name,
        "type": type(layer).__name__,
        "parent": parent,
        "kernel": None,
        "strides": None,
        "padding": None,
        "pad": None,
        "filters": _filters(layer),
        "input_shape": None,
        "output_shape": _shape(output[0] if isinstance(output, list | tuple) else output),
        "formula": None,
        "params": layer.count_params() if layer.built else 0,
        "trainable_params": _count(layer.trainable_weights),
    }
    geometry = _geometry(layer)
    in_shape = _shape(layer.input) if geometry is not None else []
    sizes = [size for size in in_shape[:2] if size is not None]
    if geometry is None or len(sizes) < 2:  # no window, or an input of unknown size
        return row
    spec = geometry["padding"]
    pads = [
        explicit_padding(size, kernel, stride, spec if isinstance(spec, str) else spec[axis])
        for axis, (size, kernel, stride) in enumerate(
            zip(sizes, geometry["effective"], geometry["strides"], strict=True)
        )
    ]
    row.update(
        kernel=list(geometry["kernel"]),
        strides=list(geometry["strides"]),
        padding=spec if isinstance(spec, str) else "explicit",
        pad=[list(p) for p in pads],
        input_shape=in_shape,
        formula=[
            output_size(size, kernel, stride, pad)
            for size, kernel, stride, pad in zip(
                sizes, geometry["effective"], geometry["strides"], pads, strict=True
            )
        ],
    )
    return row


def fully_connected_comparison(model: keras.Model) -> dict | None:
    """Weights of one dense layer from the first convolution's input to its output,
    against the convolution's own (biases aside): why convolutions share weights."""
    first = next(
        (layer for layer, _ in flatten_layers(model) if type(layer).__name__ in CONVOLUTIONS),
        None,
    )
    if first is None:
        return None
    conv = sum(math.prod(w.shape) for w in first.weights if w.name != "bias")
    # From the pixels the network takes, before any padding layer.
    input_shape = [int(d) for d in model.input_shape[1:]]
    output_shape = [int(d) for d in first.output.shape[1:]]  # known: the input's size is
    dense = math.prod(input_shape) * math.prod(output_shape)
    return {
        "layer": first.name,
        "input_shape": input_shape,
        "output_shape": output_shape,
        "conv_weights": conv,
        "dense_weights": dense,
        "ratio": dense / conv,
    }


def inspect_model(model: keras.Model) -> dict:
    """``layers``, ``total_params``, ``trainable_params``, ``non_trainable_params``
    (frozen layers and BatchNorm statistics) and ``fully_connected_comparison``."""
    rows = [layer_row(layer, parent) for layer, parent in flatten_layers(model)]
    trainable = _count(model.trainable_weights)
    total = model.count_params()
    return {
        "layers": rows,
        "total_params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "fully_connected_comparison": fully_connected_comparison(model),
    }


def build_for_inspection(
    name: str, image_size: int | None = None, weights: str | None = None
) -> keras.Model:
    """The registry's backbone ``name`` alone (no head), random weights by default."""
    from models.networks.classifier import build_backbone

    spec = get_backbone(name)
    size = image_size or spec.default_size
    return build_backbone(spec, (size, size), weights)


def inspect_backbone(
    name: str, image_size: int | None = None, weights: str | None = None
) -> tuple[keras.Model, dict]:
    """A backbone built for inspection, and its report."""
    model = build_for_inspection(name, image_size, weights)
    height, width = model.input_shape[1:3]
    return model, {"backbone": name, "image_size": [height, width], **inspect_model(model)}


def inspect_bundle(bundle) -> dict:
    """The report of a loaded ``models.bundle.Bundle``'s whole model."""
    return {
        "model": bundle.name,
        "version": bundle.version,
        "image_size": list(bundle.image_size),
        **inspect_model(bundle.model),
    }


def _cell(values: list[int] | None, sep: str = "x") -> str:
    return "" if values is None else sep.join("?" if v is None else str(v) for v in values)


def _padding_cell(row: dict) -> str:
    if row["pad"] is None:
        return ""
    totals = [before + after for before, after in row["pad"]]
    pads = {p for pair in row["pad"] for p in pair}
    numeric = (
        f"P={pads.pop()}" if len(pads) == 1 else "P=" + ",".join(f"{b}+{a}" for b, a in row["pad"])
    )
    return (
        f"{row['padding']} {numeric}" if any(totals) or row["padding"] != "valid" else "valid P=0"
    )


def render_text(report: dict) -> str:
    """The report as a table for people, totals and the dense-layer comparison."""
    subject = report.get("backbone") or f"{report['model']} version {report['version']}"
    height, width = report["image_size"]
    frozen = report["non_trainable_params"]
    lines = [
        f"{subject} at {height}x{width}: {report['total_params']:,} parameters "
        f"({report['trainable_params']:,} trainable, {frozen:,} frozen or statistics)",
    ]
    header = ("layer", "type", "F", "S", "padding", "filters", "output", "formula", "params")
    table = [header]
    for row in report["layers"]:
        formula = ""
        if row["formula"] is not None:
            same = row["formula"] == row["output_shape"][:2]
            formula = _cell(row["formula"]) + (" =" if same else " != Keras")
        name = f"  {row['name']}" if row["parent"] else row["name"]
        table.append(
            (
                name,
                row["type"],
                _cell(row["kernel"]),
                _cell(row["strides"]),
                _padding_cell(row),
                "" if row["filters"] is None else str(row["filters"]),
                _cell(row["output_shape"]),
                formula,
                f"{row['params']:,}",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    right = {2, 3, 5, 8}
    for r in table:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    parents = sorted({row["parent"] for row in report["layers"] if row["parent"]})
    if parents:
        lines.append(f"(indented: layers of the nested model {', '.join(parents)})")
    lines.append("formula: (W - F + 2P) / S + 1, rounded down; '=' where Keras agrees")
    comparison = report["fully_connected_comparison"]
    if comparison:
        lines.append(
            f"A fully connected layer from the {_cell(comparison['input_shape'])} input to "
            f"{comparison['layer']}'s {_cell(comparison['output_shape'])} activations would "
            f"need {comparison['dense_weights']:,} weights; the convolution shares "
            f"{comparison['conv_weights']:,} across every position "
            f"({comparison['ratio']:,.0f} times fewer)."
        )
    return "\n".join(lines)
