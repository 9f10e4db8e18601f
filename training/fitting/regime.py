"""How a phase learns: the optimizer and its learning-rate schedule, layer-wise
decay in fine-tuning, and the regularisation of its targets (label smoothing,
MixUp, CutMix). All of it lives in the training step only: nothing here is saved
in the bundle, and the figures stay on hard labels (validation targets are never
smoothed or mixed).

MixUp and CutMix are drawn in NumPy inside the batch generator, from the epoch's
own random stream (``training.fitting.finetune.batches``), so a resumed run mixes exactly
as the whole one would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np


@dataclass(frozen=True)
class Regime:
    schedule: str = "constant"
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) mixing weight; 0: off
    cutmix: float = 0.0  # Beta(alpha, alpha) share of the pasted box; 0: off
    layer_decay: float = 1.0  # fine-tuning: each block below the top learns at this factor
    factors: Mapping[int, float] = field(default_factory=dict)  # id(variable) -> rate factor

    @property
    def soft_targets(self) -> bool:
        """Whether targets are distributions (one-hot, smoothed or mixed) rather than
        class indices."""
        return bool(self.label_smoothing or self.mixup or self.cutmix)


def soften(
    inputs: np.ndarray,
    targets: np.ndarray,
    classes: int,
    regime: Regime,
    rng: np.random.Generator,
    training: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """One batch's targets as distributions: one-hot, and for training batches
    smoothed, and MixUp or CutMix (one of them per batch, at random when both are on)
    applied to the images and their targets together."""
    one_hot = np.eye(classes, dtype=np.float32)[targets]
    if not training:
        return inputs, one_hot
    if regime.label_smoothing:
        one_hot = one_hot * (1 - regime.label_smoothing) + regime.label_smoothing / classes
    choices = [k for k, alpha in (("mixup", regime.mixup), ("cutmix", regime.cutmix)) if alpha]
    if not choices or len(inputs) < 2:
        return inputs, one_hot
    kind = choices[int(rng.integers(len(choices)))]
    partner = rng.permutation(len(inputs))
    if kind == "mixup" or inputs.ndim != 4:  # features (the head phase) can only be mixed
        alpha = regime.mixup or regime.cutmix
        share = np.float32(rng.beta(alpha, alpha))
        images = inputs.astype(np.float32)
        mixed = share * images + (1 - share) * images[partner]
        return mixed, share * one_hot + (1 - share) * one_hot[partner]
    return _cutmix(inputs, one_hot, partner, float(rng.beta(regime.cutmix, regime.cutmix)), rng)


def _cutmix(
    inputs: np.ndarray,
    one_hot: np.ndarray,
    partner: np.ndarray,
    share: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste a box of each partner image (a ``1 - share`` part of the area) into each
    image; the targets mix by the area each image keeps."""
    height, width = inputs.shape[1:3]
    box_h, box_w = int(height * math.sqrt(1 - share)), int(width * math.sqrt(1 - share))
    top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
    pasted = inputs.astype(np.float32).copy()
    pasted[:, top : top + box_h, left : left + box_w] = inputs[partner][
        :, top : top + box_h, left : left + box_w
    ]
    kept = 1 - box_h * box_w / (height * width)
    return pasted, kept * one_hot + (1 - kept) * one_hot[partner]


def learning_rate(regime: Regime, lr: float, total_steps: int) -> Any:
    """The rate over a phase's steps: constant; cosine (5 % linear warm-up from 0,
    then cosine down to 0); or one-cycle (30 % warm-up from lr/25, then cosine down
    to lr/10,000, as fastai's ``fit_one_cycle``)."""
    if regime.schedule == "constant":
        return lr
    share, start, final = (0.05, 0.0, 0.0) if regime.schedule == "cosine" else (0.3, lr / 25, 1e-4)
    warmup = max(1, int(total_steps * share))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=start,
        decay_steps=max(1, total_steps - warmup),
        alpha=final,
        warmup_target=lr,
        warmup_steps=warmup,
    )


class LayerwiseAdam(keras.optimizers.Adam):
    """Adam whose rate is scaled per variable: fine-tuning's lower layers move less
    than the top (layer-wise decay). Adam normalises gradients, so the rate itself,
    not the gradient, has to be scaled."""

    def __init__(self, factors: Mapping[int, float], **kwargs: Any):
        super().__init__(**kwargs)
        self._factors = dict(factors)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        factor = self._factors.get(id(variable), 1.0)
        super().update_step(gradient, variable, learning_rate * factor)


def layer_factors(layers: list[keras.layers.Layer], decay: float) -> dict[int, float]:
    """Rate factors for the trainable layers, top first: 1, decay, decay^2, ... by
    position among the layers with weights."""
    factors: dict[int, float] = {}
    trained = [layer for layer in layers if layer.trainable_weights]
    for depth, layer in enumerate(reversed(trained)):
        for variable in layer.trainable_weights:
            # The optimizer meets the backend's variable under each Keras variable.
            factors[id(getattr(variable, "value", variable))] = decay**depth
    return factors


def optimizer(regime: Regime, lr: float, total_steps: int) -> keras.optimizers.Optimizer:
    rate = learning_rate(regime, lr, total_steps)
    if regime.factors:
        return LayerwiseAdam(regime.factors, learning_rate=rate)
    return keras.optimizers.Adam(rate)


def loss_and_metric(regime: Regime) -> tuple[str, keras.metrics.Metric]:
    """Cross-entropy on class indices, or on distributions when targets are soft; the
    metric is accuracy either way, named so the history keeps its columns."""
    if regime.soft_targets:
        return "categorical_crossentropy", keras.metrics.CategoricalAccuracy(name="accuracy")
    return "sparse_categorical_crossentropy", keras.metrics.SparseCategoricalAccuracy(
        name="accuracy"
    )
