"""Inference on a loaded bundle: one compiled forward pass."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
    from models.bundle import Bundle


class _Engine(Protocol):
    bundle: Bundle
    labels: list[str]

    def predict(self, pixels: np.ndarray) -> np.ndarray: ...


def warm_up(engine: _Engine) -> None:
    """Run one inference on a blank image; raises if the model cannot run."""
    height, width = engine.bundle.image_size
    probabilities = engine.predict(np.zeros((1, height, width, 3), np.uint8))
    if probabilities.shape != (1, len(engine.labels)) or not np.all(np.isfinite(probabilities)):
        raise ValueError("warm-up inference returned no valid probabilities")


class Classifier:
    """Calls a bundle's model through one traced ``tf.function``.

    ``model.predict`` builds a data pipeline per call (~90 ms here); a traced
    function with a fixed signature is traced once, at construction (the
    warm-up), and is then safe to call from many threads at once.
    """

    engine = "keras"

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.labels = bundle.labels
        height, width = bundle.image_size
        model = bundle.model
        signature = tf.TensorSpec([None, height, width, 3], tf.uint8, name="pixels")

        @tf.function(input_signature=[signature], reduce_retracing=True)
        def forward(pixels):
            return model(tf.cast(pixels, tf.float32), training=False)

        self._forward = forward
        self.warm_up()

    def warm_up(self) -> None:
        warm_up(self)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 in, ``(n, classes)`` float probabilities out."""
        return self._forward(tf.convert_to_tensor(pixels, tf.uint8)).numpy()
