"""Test-time augmentation: a model's probabilities averaged over a small fixed set
of views of each image. One implementation for ``ktl train --tta`` (validation and
test) and the service's ``?tta=true``, so both see the same views.

The views: the image itself, its horizontal mirror, and its four corner crops of
87.5 % of each side (the classic 224-of-256) resized back to full size
(bilinear). Six forward passes per image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

VIEWS = (
    "identity",
    "horizontal flip",
    "top-left crop",
    "top-right crop",
    "bottom-left crop",
    "bottom-right crop",
)
CROP = 0.875  # share of each side a corner crop keeps


def views(pixels: np.ndarray | tf.Tensor) -> tf.Tensor:
    """``(n, h, w, 3)`` images -> ``(len(VIEWS) * n, h, w, 3)``, view after view, in
    the images' dtype (uint8 pixels stay whole numbers 0..255)."""
    x = tf.convert_to_tensor(pixels)
    height, width = int(x.shape[1]), int(x.shape[2])
    crop_h, crop_w = max(1, round(height * CROP)), max(1, round(width * CROP))
    out = [x, tf.reverse(x, axis=[2])]
    for top, left in (
        (0, 0),
        (0, width - crop_w),
        (height - crop_h, 0),
        (height - crop_h, width - crop_w),
    ):
        crop = tf.cast(x[:, top : top + crop_h, left : left + crop_w, :], tf.float32)
        resized = tf.image.resize(crop, (height, width), method="bilinear")
        out.append(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), x.dtype))
    return tf.concat(out, axis=0)


def averaged(probabilities: np.ndarray | tf.Tensor, count: int) -> np.ndarray:
    """The mean over the views of each image: ``(len(VIEWS) * count, classes)`` rows as
    :func:`views` ordered them -> ``(count, classes)``."""
    rows = np.asarray(probabilities, dtype=np.float64)
    return rows.reshape(len(VIEWS), count, -1).mean(axis=0).astype(np.float32)


def with_tta(forward: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
    """``forward`` (a batch of pixels -> probabilities) answering with the views'
    average instead."""

    def averaged_forward(pixels: tf.Tensor) -> tf.Tensor:
        return tf.convert_to_tensor(averaged(forward(views(pixels)), int(pixels.shape[0])))

    return averaged_forward
