"""Calibrated probabilities: temperature scaling (Guo et al. 2017).

One number T divides the logits before the softmax; it is fitted on the validation
split by negative log-likelihood, so the probabilities say how often the model is
right. The temperature is folded into the last Dense layer of the saved model
(``softmax(Wx + b) / T`` is ``softmax((W/T)x + b/T)``), so every route and every
export returns calibrated probabilities with no layer or step of its own.
"""

from __future__ import annotations

import keras
import numpy as np

from models.metadata import CalibrationFigures

ECE_BINS = 15
_TINY = 1e-30  # float32 probabilities can underflow to 0; their log must stay finite


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities the model gives once its logits are divided by ``temperature``."""
    logits = np.log(np.maximum(np.asarray(probabilities, np.float64), _TINY)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def nll(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    picked = probabilities[np.arange(len(targets)), targets]
    return float(-np.log(np.maximum(picked, _TINY)).mean())


def brier(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean squared distance between the probabilities and the one-hot truth."""
    truth = np.zeros_like(probabilities, dtype=np.float64)
    truth[np.arange(len(targets)), targets] = 1.0
    return float(((probabilities - truth) ** 2).sum(axis=1).mean())


def ece(probabilities: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the confidence-weighted gap between how sure the
    model is and how often it is right, over ``bins`` equal-width confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(gap)


def fit_temperature(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that best explains these images: the lowest summed NLL plus
    ``(log T)^2``, a prior that keeps T near 1 unless the images say otherwise. Without
    it, a validation split the model gets all right drives T to 0 (every answer
    "certain"), which a few dozen images cannot justify; with many images the data
    decide. A golden-section search over 1/T, between 0.05 and 20."""
    low, high = 1 / 20, 1 / 0.05
    ratio = (np.sqrt(5) - 1) / 2

    def loss(inverse: float) -> float:
        summed = len(targets) * nll(scale(probabilities, 1 / inverse), targets)
        return summed + np.log(inverse) ** 2

    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(80):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(1 / ((low + high) / 2))


def checked_temperature(probabilities: np.ndarray, targets: np.ndarray) -> tuple[float, str]:
    """The temperature to use, and why: fitted on all validation images, but only
    when fitting on one half lowers the NLL of the other half (both ways round).
    A temperature that does not carry over to images it was not fitted on would
    make the test figures worse, not better; then the model keeps T = 1."""
    halves = np.arange(len(targets)) % 2 == 0
    gain = 0.0
    for fit, check in ((halves, ~halves), (~halves, halves)):
        if fit.sum() < 2 or check.sum() < 2:
            return 1.0, "too few validation images to check a temperature: left at 1"
        temperature = fit_temperature(probabilities[fit], targets[fit])
        gain += nll(probabilities[check], targets[check]) - nll(
            scale(probabilities[check], temperature), targets[check]
        )
    if gain <= 0:
        return 1.0, (
            "a temperature fitted on half the validation images did not lower the NLL of "
            "the other half: the probabilities are left as the model gives them"
        )
    return fit_temperature(probabilities, targets), "fitted on validation, checked by halves"


def figures(probabilities: np.ndarray, targets: np.ndarray) -> CalibrationFigures:
    return CalibrationFigures(
        ece=round(ece(probabilities, targets), 6),
        nll=round(nll(probabilities, targets), 6),
        brier=round(brier(probabilities, targets), 6),
    )


def fold_into(model: keras.Model, temperature: float) -> None:
    """Divide the logits of ``model``'s last Dense layer (``predictions``) by the
    temperature, in its weights."""
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel / temperature, bias / temperature])
