"""Export a published bundle for other runtimes: a TensorFlow Serving SavedModel,
ONNX or TFLite, written under an export folder (never into the model store,
whose versions are immutable).

The SavedModel's ``serving_default`` signature takes encoded images (a
``tf.string`` tensor ``[None]`` named ``image_bytes``) and decodes and resizes
them in the graph the way ``models.preprocessing.load_image`` does: Pillow's
8-bit bilinear resampling (fixed-point weights, horizontal pass then vertical,
each rounded to uint8), its ``reducing_gap`` box reduction, and alpha composited
on white, all reproduced in integer-exact arithmetic, so a PNG gives the same
pixels as ``load_image``. What the graph does not do: EXIF orientation, 16-bit
grayscale scaling, GIF transparency, and formats TensorFlow cannot decode (TIFF).
JPEGs are decoded by TensorFlow's libjpeg with the same draft scaling and DCT
method as Pillow, which agrees closely but not bit for bit.

ONNX and TFLite take the uint8 pixel tensor ``[None, height, width, 3]``
(``pixels``) at the bundle's size and return ``probabilities``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models.bundle import Bundle
from models.choices import EXPORT_FORMATS
from models.errors import UserError
from models.preprocessing import REDUCING_GAP
from models.store import METADATA_FILE

DEFAULT_OUT = Path("exports")
ONNX_OPSET = 17
ONNX_FILE = "model.onnx"
TFLITE_FILE = "model.tflite"
TFLITE_INT8_FILE = "model_int8.tflite"
LABELS_FILE = "labels.txt"

# Pillow's fixed-point precision for 8-bit resampling (Resample.c: 32 - 8 - 2).
_PRECISION_BITS = 22


class ExportError(UserError):
    """An export that cannot be made as asked; the message says why."""


def export_dir(out: str | Path, bundle: Bundle) -> Path:
    """``OUT/<name>/<version>``: a TensorFlow Serving base path is ``OUT/<name>``."""
    return Path(out) / bundle.name / str(bundle.version)


def check_outside_store(out: str | Path, store_root: str | Path) -> None:
    """Refuse an export folder inside the model store: its versions are immutable."""
    out_path, store = Path(out).resolve(), Path(store_root).resolve()
    if out_path == store or store in out_path.parents:
        raise ExportError(
            f"--out {out} is inside the model store {store_root}; the store's versions are "
            f"never modified: export somewhere else (default ./{DEFAULT_OUT})"
        )


def export_bundle(
    bundle: Bundle,
    fmt: str,
    out: str | Path = DEFAULT_OUT,
    calibration: np.ndarray | None = None,
) -> Path:
    """Write ``bundle`` in ``fmt`` under ``OUT/<name>/<version>/``; returns the path written
    (the version folder for a SavedModel, the file otherwise). A previous export of the
    same format there is replaced. ``calibration`` (uint8 pixels, tflite only): an INT8
    TFLite model whose activation ranges are measured on those images."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(
            f"Unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    if calibration is not None and fmt != "tflite":
        raise ExportError(f"--int8 applies to --format tflite, not {fmt}")
    target = export_dir(out, bundle)
    try:
        target.mkdir(parents=True, exist_ok=True)
        # quiet: the converters print their internals on stdout, which is for results
        with (
            quiet_stdout(),
            tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp,
        ):
            work = Path(tmp)
            if fmt == "savedmodel":
                written = _save_savedmodel(bundle, work / "savedmodel")
            elif fmt == "onnx":
                written = _save_onnx(bundle, work / ONNX_FILE)
            else:
                name = TFLITE_FILE if calibration is None else TFLITE_INT8_FILE
                written = _save_tflite(bundle, work / name, calibration)
            for entry in [written] if written.is_file() else sorted(written.iterdir()):
                _replace(entry, target / entry.name)
        (target / METADATA_FILE).write_text(
            json.dumps(bundle.metadata.to_json(), indent=2) + "\n", encoding="utf-8"
        )
        (target / LABELS_FILE).write_text("\n".join(bundle.labels) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"Cannot write the export to {target}: {exc}") from exc
    return target if fmt == "savedmodel" else target / written.name


def _replace(source: Path, destination: Path) -> None:
    if destination.is_dir() and not destination.is_symlink():
        shutil.rmtree(destination)
    elif destination.exists():
        destination.unlink()
    source.rename(destination)


def _pixel_spec(bundle: Bundle) -> tf.TensorSpec:
    height, width = bundle.image_size
    return tf.TensorSpec([None, height, width, 3], tf.uint8, name="pixels")


class ServingModule(tf.Module):
    """The SavedModel: encoded images or pixels in, probabilities and top labels out."""

    def __init__(self, bundle: Bundle):
        super().__init__(name=None)
        self.model = bundle.model
        self.image_size = bundle.image_size
        self.label_table = tf.constant(bundle.labels)
        self.serve_pixels = tf.function(
            self._classify_pixels, input_signature=[_pixel_spec(bundle)]
        )
        self.serve_image_bytes = tf.function(
            self._classify_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
        )

    def _classify_pixels(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = self.model(tf.cast(pixels, tf.float32), training=False)
        labels = tf.gather(self.label_table, tf.argmax(probabilities, axis=-1))
        return {"probabilities": probabilities, "labels": labels}

    def _classify_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        height, width = self.image_size
        pixels = tf.map_fn(
            lambda data: decode_image(data, (height, width)),
            image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.uint8),
        )
        return self._classify_pixels(pixels)


def _save_savedmodel(bundle: Bundle, path: Path) -> Path:
    module = ServingModule(bundle)
    signatures = {
        "serving_default": module.serve_image_bytes.get_concrete_function(),
        "serving_pixels": module.serve_pixels.get_concrete_function(),
    }
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def _pixels_model(bundle: Bundle) -> keras.Model:
    """The bundle's model behind a uint8 ``pixels`` input, with a named output."""
    height, width = bundle.image_size
    pixels = keras.Input((height, width, 3), dtype="uint8", name="pixels")
    probabilities = bundle.model(keras.ops.cast(pixels, "float32"), training=False)
    return keras.Model(pixels, {"probabilities": probabilities}, name=f"{bundle.name}_pixels")


def _save_tflite(bundle: Bundle, path: Path, calibration: np.ndarray | None) -> Path:
    # TF 2.21's converter gives NaNs for a tf.function over a Keras 3 model (its
    # variables are not frozen); from_keras_model freezes them and keeps a signature.
    converter = tf.lite.TFLiteConverter.from_keras_model(_pixels_model(bundle))
    if calibration is not None:  # int8 weights and activations; uint8 in, float out
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [calibration[i : i + 1]] for i in range(len(calibration))
        )
    path.write_bytes(converter.convert())
    return path


def tflite_runner(path: Path):
    """The exported TFLite file run by LiteRT: a callable, uint8 pixels in,
    probabilities out."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ExportError(
            "Checking a TFLite export needs LiteRT: pip install ai-edge-litert"
        ) from exc
    runner = Interpreter(model_path=str(path)).get_signature_runner()
    return lambda pixels: np.concatenate(
        [runner(pixels=pixels[i : i + 1])["probabilities"] for i in range(len(pixels))]
    )


def _save_onnx(bundle: Bundle, path: Path) -> Path:
    return save_onnx(bundle.model, bundle.image_size, path)


def save_onnx(model: keras.Model, image_size: tuple[int, int], path: Path) -> Path:
    """``model`` as an ONNX graph: uint8 ``pixels`` in, ``probabilities`` out."""
    try:
        import tf2onnx
    except ImportError as exc:
        raise ExportError(
            "ONNX export needs the tf2onnx package: pip install tf2onnx onnx"
        ) from exc
    spec = tf.TensorSpec([None, *image_size, 3], tf.uint8, name="pixels")

    @tf.function(input_signature=[spec])
    def classify(pixels):
        return {"probabilities": model(tf.cast(pixels, tf.float32), training=False)}

    tf2onnx.convert.from_function(
        classify, input_signature=[spec], opset=ONNX_OPSET, output_path=str(path)
    )
    return path


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence a library's chatter on stdout, which is for results: TensorFlow's
    converters print their internals there, from Python and from C++. Failures still
    raise with their reason."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


# --- decoding and resizing in the graph, as load_image does with Pillow ---------------


def decode_image(data: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """One encoded image (scalar ``tf.string``) to ``(height, width, 3)`` uint8 RGB."""
    height, width = size
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: _decode_jpeg_draft(data, height, width),
        lambda: _to_rgb(tf.io.decode_image(data, expand_animations=False)),
    )
    return resize_like_pillow(image, height, width)


def _decode_jpeg_draft(data: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Pillow's ``draft``: libjpeg decodes at 1/8, 1/4 or 1/2 scale when the target
    is at most that big; ISLOW DCT and fancy upsampling, as Pillow's decoder."""
    shape = tf.io.extract_jpeg_shape(data)
    scale = tf.minimum(shape[1] // width, shape[0] // height)
    branch = tf.cast(scale >= 2, tf.int32) + tf.cast(scale >= 4, tf.int32)
    branch += tf.cast(scale >= 8, tf.int32)

    def decode(ratio: int):
        return lambda: tf.io.decode_jpeg(
            data, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE"
        )

    return tf.switch_case(branch, [decode(1), decode(2), decode(4), decode(8)])


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
    """Grayscale to RGB; an alpha channel composited on white with Pillow's integer
    arithmetic (AlphaComposite.c over an opaque white background)."""
    opaque = tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), tf.constant(255, tf.uint8))
    grey = image[..., :1]
    rgba = tf.switch_case(
        tf.shape(image)[-1] - 1,
        [
            lambda: tf.concat([grey, grey, grey, opaque], -1),  # L
            lambda: tf.concat([grey, grey, grey, image[..., 1:2]], -1),  # LA
            lambda: tf.concat([image[..., :3], opaque], -1),  # RGB
            lambda: image[..., :4],  # RGBA
        ],
    )
    rgb = tf.cast(rgba[..., :3], tf.int32)
    alpha = tf.cast(rgba[..., 3:], tf.int32)
    blended = 128 * (rgb * alpha + 255 * (255 - alpha)) + (0x80 << 7)
    blended = (blended // 256 + blended) // 256 // 128  # non-negative: // is >>
    composited = tf.where(alpha == 255, rgb, tf.where(alpha == 0, 255, blended))
    return tf.cast(composited, tf.uint8)


def resize_like_pillow(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """``Image.resize((width, height), BILINEAR, reducing_gap=REDUCING_GAP)`` on 8-bit RGB."""
    shape = tf.shape(image)
    in_h, in_w = shape[0], shape[1]
    # Pillow: factor = int(in / out / reducing_gap) or 1; a box reduction by it first.
    factor_y = tf.maximum(tf.cast(tf.cast(in_h, tf.float64) / height / REDUCING_GAP, tf.int32), 1)
    factor_x = tf.maximum(tf.cast(tf.cast(in_w, tf.float64) / width / REDUCING_GAP, tf.int32), 1)
    reduced = _reduce(image, factor_y, factor_x)
    # The resize then covers the box (0, 0, in_w / fx, in_h / fy) of the reduced image,
    # which Pillow passes to C as float32.
    box_w = _float32_box(in_w, factor_x)
    box_h = _float32_box(in_h, factor_y)
    rows = _coefficients(tf.shape(reduced)[1], box_w, width)  # [width, in]
    columns = _coefficients(tf.shape(reduced)[0], box_h, height)  # [height, in]
    pixels = tf.cast(reduced, tf.float64)
    # Resample.c: when the height shrinks more than twice as much as the width, the
    # vertical pass runs first; each pass rounds to 8 bits, so the order matters.
    shrink_h = tf.shape(reduced)[0] - height
    shrink_w = tf.shape(reduced)[1] - width
    resized = tf.cond(
        (shrink_h > 0) & (shrink_h > 2 * shrink_w),
        lambda: _apply(rows, _apply(columns, pixels, axis=0), axis=1),
        lambda: _apply(columns, _apply(rows, pixels, axis=1), axis=0),
    )
    return tf.cast(resized, tf.uint8)


def _float32_box(size: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    edge = tf.cast(size, tf.float64) / tf.cast(factor, tf.float64)
    return tf.cast(tf.cast(edge, tf.float32), tf.float64)


def _reduce(image: tf.Tensor, factor_y: tf.Tensor, factor_x: tf.Tensor) -> tf.Tensor:
    """Pillow's ``Image.reduce``: box sums, rounded by its fixed-point multiplier
    (partial boxes at the right and bottom edges average what they cover)."""
    shape = tf.shape(image)
    in_h, in_w = shape[0], shape[1]
    out_h = (in_h + factor_y - 1) // factor_y
    out_w = (in_w + factor_x - 1) // factor_x
    padded = tf.pad(
        tf.cast(image, tf.int64),
        [[0, out_h * factor_y - in_h], [0, out_w * factor_x - in_w], [0, 0]],
    )
    boxes = tf.reshape(padded, [out_h, factor_y, out_w, factor_x, 3])
    sums = tf.reduce_sum(boxes, axis=[1, 3])
    count_y = tf.minimum(factor_y, in_h - tf.range(out_h) * factor_y)
    count_x = tf.minimum(factor_x, in_w - tf.range(out_w) * factor_x)
    count = tf.cast(count_y[:, None] * count_x[None, :], tf.int64)[..., None]
    # Reduce.c: multiplier = (UINT32)(2^32 as float / (256 * count) as float), in float32.
    multiplier = tf.cast(
        tf.constant(2.0**32, tf.float32) / tf.cast(256 * count, tf.float32), tf.int64
    )
    reduced = (sums + count // 2) * multiplier // (1 << 24)
    return tf.cast(reduced, tf.uint8)


def _coefficients(in_size: tf.Tensor, box: tf.Tensor, out_size: int) -> tf.Tensor:
    """Pillow's bilinear weights (Resample.c ``precompute_coeffs``) as an
    ``[out_size, in_size]`` matrix of fixed-point integers, held in float64."""
    scale = box / out_size
    filter_scale = tf.maximum(scale, 1.0)
    support = 1.0 * filter_scale
    centers = (tf.range(out_size, dtype=tf.float64) + 0.5) * scale
    positions = tf.range(in_size, dtype=tf.float64)
    xmin = tf.maximum(tf.floor(centers - support + 0.5), 0.0)
    xmax = tf.minimum(tf.floor(centers + support + 0.5), tf.cast(in_size, tf.float64))
    inside = (positions[None, :] >= xmin[:, None]) & (positions[None, :] < xmax[:, None])
    distance = tf.abs((positions[None, :] - centers[:, None] + 0.5) * (1.0 / filter_scale))
    weights = tf.where(inside, tf.maximum(1.0 - distance, 0.0), 0.0)
    total = tf.reduce_sum(weights, axis=1, keepdims=True)
    weights = tf.math.divide_no_nan(weights, total)
    return tf.floor(0.5 + weights * (1 << _PRECISION_BITS))


def _apply(coefficients: tf.Tensor, image: tf.Tensor, axis: int) -> tf.Tensor:
    """One resampling pass; sums are exact in float64, then rounded and clipped to 8 bits."""
    if axis == 1:
        sums = tf.einsum("ox,yxc->yoc", coefficients, image)
    else:
        sums = tf.einsum("oy,yxc->oxc", coefficients, image)
    rounded = tf.floor((sums + (1 << (_PRECISION_BITS - 1))) / (1 << _PRECISION_BITS))
    return tf.clip_by_value(rounded, 0.0, 255.0)
