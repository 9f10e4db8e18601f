"""Inference on a loaded bundle: one compiled forward pass."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

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


def _traced(model: Any, image_size: tuple[int, int]) -> Any:
    """``model``'s inference-mode forward pass on uint8 pixels of ``image_size``, traced
    once for batches of any size."""
    height, width = image_size
    signature = tf.TensorSpec([None, height, width, 3], tf.uint8, name="pixels")

    @tf.function(input_signature=[signature], reduce_retracing=True)
    def forward(pixels):
        return model(tf.cast(pixels, tf.float32), training=False)

    return forward


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
        self._forward = _traced(bundle.model, bundle.image_size)
        self.warm_up()

    def warm_up(self) -> None:
        warm_up(self)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 in, ``(n, classes)`` float probabilities out."""
        return self._forward(tf.convert_to_tensor(pixels, tf.uint8)).numpy()


class PooledFeatures:
    """A bundle's backbone features, globally pooled (the head's input): the drift
    monitor's embeddings (``models.drift``), through a forward pass of its own, traced
    once, apart from the classifier's (so never on the prediction path)."""

    def __init__(self, bundle: Bundle, batch_size: int = 64):
        from models.networks.classifier import pooled_model

        self._forward = _traced(pooled_model(bundle.model), bundle.image_size)
        self.batch_size = batch_size

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 in, ``(n, width)`` float32 features out."""
        chunks = [
            self._forward(tf.convert_to_tensor(pixels[start : start + self.batch_size]))
            for start in range(0, len(pixels), self.batch_size)
        ]
        return np.concatenate([chunk.numpy() for chunk in chunks]).astype(np.float32)
