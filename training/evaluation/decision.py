"""A decision, not only probabilities: the confidence below which a model answers
"not sure / none of these" instead of naming a class.

The default rule (``auto``) answers 95 % of the validation images: the threshold is
the confidence of the image at the 5th percentile. A model that is sure of what it
knows then keeps answering nearly everything it was trained for, while images of
something else, on which it is less sure, fall below. Measured on generated data
with classes left out of training (tests/training/test_decision.py), this rejects
several times more off-class than in-class images and answers at least 90 % of the
in-class test images. With ``--target-accuracy A`` the threshold is instead the
lowest one whose answered validation images are at least A right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.decision import answered as answered_by
from models.errors import ConfigError
from models.metadata import Decision

AUTO_COVERAGE = 0.95  # the share of validation images the auto rule answers


def choose_threshold(
    probabilities: np.ndarray,
    targets: np.ndarray,
    setting: str | float,
    target_accuracy: float | None = None,
) -> Decision:
    """The threshold and the rule that chose it, on the validation split."""
    if not isinstance(setting, str):
        return Decision(threshold=float(setting), rule="fixed (--min-confidence)")
    if setting != "auto":
        raise ConfigError(f"--min-confidence must be auto or a number; got {setting!r}")
    confidence = np.sort(probabilities.max(axis=1))
    if target_accuracy is not None:
        reached = _reaching(probabilities, targets, target_accuracy)
        if reached is not None:
            return Decision(
                threshold=reached,
                rule=f"lowest with validation accuracy >= {target_accuracy:g} when answering",
            )
    index = int(np.floor((1 - AUTO_COVERAGE) * len(confidence)))
    threshold = float(confidence[min(index, len(confidence) - 1)])
    rule = f"answers {AUTO_COVERAGE:.0%} of validation images"
    if target_accuracy is None:
        return Decision(threshold=threshold, rule=rule)
    note = (
        f"no threshold reaches accuracy {target_accuracy:g} on the validation images "
        "(even the surest answers are wrong too often): the auto rule was used instead"
    )
    return Decision(threshold=threshold, rule=rule, note=note)


def _reaching(probabilities: np.ndarray, targets: np.ndarray, target: float) -> float | None:
    """The lowest confidence threshold at which the answered images are ``target``
    right, or None when none is."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    order = np.argsort(-confidence, kind="stable")
    accuracy = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    meets = np.nonzero(accuracy >= target)[0]
    if not len(meets):
        return None
    return float(confidence[order][meets[-1]])


@dataclass(frozen=True)
class Selective:
    """What a threshold gives on some images: how many it answers, and how many of
    those right (``selective_accuracy`` None when it answers none)."""

    images: int
    answered: int
    coverage: float
    selective_accuracy: float | None

    def on(self, decision: Decision, split: str) -> Decision:
        """``decision`` with what it gives on ``split`` (the figures of metadata.json)."""
        return Decision.model_validate(
            {**decision.model_dump(exclude_unset=True), "split": split, **asdict(self)}
        )


def selective(probabilities: np.ndarray, targets: np.ndarray, threshold: float) -> Selective:
    """What a threshold gives: the share of images answered, and how many of those right."""
    answered = answered_by(probabilities, threshold)
    correct = probabilities.argmax(axis=1) == targets
    count = int(answered.sum())
    return Selective(
        images=int(len(targets)),
        answered=count,
        coverage=round(float(answered.mean()), 6) if len(targets) else 0.0,
        selective_accuracy=round(float(correct[answered].mean()), 6) if count else None,
    )


def risk_coverage(probabilities: np.ndarray, targets: np.ndarray) -> list[tuple[float, float]]:
    """(coverage, accuracy of the answered) for every threshold, most confident first."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    order = np.argsort(-confidence, kind="stable")
    answered = np.arange(1, len(order) + 1)
    accuracy = np.cumsum(correct[order]) / answered
    return [(float(c), float(a)) for c, a in zip(answered / len(order), accuracy, strict=True)]


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The probability that a random positive scores above a random negative (ties
    count half): how well confidence tells in-scope from out-of-scope images."""
    scores = np.concatenate([positive, negative])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
