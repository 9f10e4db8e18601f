"""Multi-label calibration and thresholds, chosen on validation: a temperature per
label, kept only where it lowers the validation NLL of images it was not fitted on
(halves, both ways round, as ``training.evaluation.calibration`` does for one class), and a
threshold per label by a stated rule (the best F1, or ``--min-precision``)."""

from __future__ import annotations

import numpy as np

from models.metadata import LabelDecision

EPSILON = 1e-7
_TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20), 121))


def binary_nll(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy over images and labels (clipped as Keras does)."""
    p = np.clip(np.asarray(probabilities, np.float64), EPSILON, 1 - EPSILON)
    return float(-(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean())


def scaled(probabilities: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """Sigmoid probabilities with their logits divided by ``temperature``."""
    p = np.clip(np.asarray(probabilities, np.float64), EPSILON, 1 - EPSILON)
    logits = np.log(p) - np.log1p(-p)
    return 1 / (1 + np.exp(-logits / temperature))


def fit_temperature(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """One label's temperature: the lowest summed NLL plus ``(log T)^2`` (a prior
    that keeps T near 1 unless the images say otherwise), over a grid 0.05..20."""
    costs = [
        len(targets) * binary_nll(scaled(probabilities, t), targets) + np.log(t) ** 2
        for t in _TEMPERATURES
    ]
    return float(_TEMPERATURES[int(np.argmin(costs))])


def checked_temperature(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """One label's temperature when fitting on one half of validation lowers the NLL
    of the other half (summed both ways round), else 1."""
    halves = np.arange(len(targets)) % 2 == 0
    if min(halves.sum(), (~halves).sum()) < 2:
        return 1.0
    gain = 0.0
    for fit, check in ((halves, ~halves), (~halves, halves)):
        t = fit_temperature(probabilities[fit], targets[fit])
        gain += binary_nll(probabilities[check], targets[check])
        gain -= binary_nll(scaled(probabilities[check], t), targets[check])
    return fit_temperature(probabilities, targets) if gain > 0 else 1.0


def temperatures(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``checked_temperature`` of every label (a column each)."""
    return np.array(
        [checked_temperature(probabilities[:, k], targets[:, k]) for k in range(targets.shape[1])]
    )


def _cuts(probabilities: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each distinct cut (the k most probable images answered): the probability
    of the last answered, of the next one (0 past the end), precision and recall."""
    order = np.argsort(-probabilities, kind="stable")
    p, y = probabilities[order].astype(np.float64), targets[order]
    true = np.cumsum(y)
    answered = np.arange(1, len(p) + 1)
    last = np.r_[p[1:] < p[:-1], True]  # a cut only between different values
    following = np.r_[p[1:], 0.0]
    precision = true / answered
    recall = true / max(float(y.sum()), 1.0)
    return p[last], following[last], precision[last], recall[last]


def choose_threshold(
    probabilities: np.ndarray, targets: np.ndarray, min_precision: float | None
) -> LabelDecision:
    """One label's threshold, halfway between the last image answered and the next:
    the cut with the best F1, or with ``min_precision`` the cut answering the most
    images whose precision reaches it (the best F1's when none does)."""
    if targets.sum() == 0 or targets.sum() == len(targets):
        which = "no" if targets.sum() == 0 else "every"
        return LabelDecision(
            threshold=0.5, note=f"{which} validation image has this label: threshold left at 0.5"
        )
    last, following, precision, recall = _cuts(probabilities, targets)
    f1 = 2 * precision * recall / np.maximum(precision + recall, EPSILON)
    pick, note = int(np.argmax(f1)), ""
    if min_precision is not None:
        reaching = np.flatnonzero(precision >= min_precision - 1e-12)
        if len(reaching):
            pick = int(reaching[-1])
        else:
            note = f"no threshold reaches precision {min_precision} on validation: best F1's"
    threshold = float(np.float32((last[pick] + following[pick]) / 2))
    return LabelDecision(threshold=round(threshold, 6), note=note or None)


def choose_thresholds(
    probabilities: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    temps: np.ndarray,
    min_precision: float | None,
) -> dict[str, LabelDecision]:
    """Every label's decision: its threshold on ``probabilities`` (calibrated) and the
    temperature that calibrated them."""
    return {
        label: choose_threshold(probabilities[:, k], targets[:, k], min_precision).model_copy(
            update={"temperature": round(float(temps[k]), 6)}
        )
        for k, label in enumerate(labels)
    }


def rule(min_precision: float | None) -> str:
    if min_precision is None:
        return "per label, the best F1 on validation"
    return f"per label, the most answers at precision >= {min_precision} on validation"
