"""The decision rule, the one place it is written: a version answers with its most
probable class when that class's calibrated probability reaches the threshold, and
abstains ("not sure / none of these") below it.

The native body, TF Serving's ``decisions``, the Open Inference Protocol's
``decision`` output, the INT8 engine's decision agreement and training's selective
figures all decide here. The threshold is a version's ``Decision.threshold``
(models/metadata.py), or a request's ``min_confidence``; training chooses it
(training/evaluation/decision.py). Probabilities are compared exactly (as float64, which holds
every float32 exactly), so the answer agrees with the confidence and threshold a
native body shows. Numpy only: this module imports no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from models.metadata import Decision

ABSTAIN = -1  # the class index of "not sure / none of these"
SEPARATOR = ";"  # between a multi-label set's labels: a CSV's labels cell, OIP's decision


def threshold_of(decision: Decision | None, min_confidence: float | None = None) -> float:
    """``min_confidence`` when given, else the version's own threshold (0 for versions
    published before thresholds existed: they always answer)."""
    if min_confidence is not None:
        return min_confidence
    return decision.threshold if decision is not None else 0.0


def decide(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """For each row of ``probabilities`` (``(n, classes)``), the index of the class
    answered, or ``ABSTAIN`` where the top probability is below ``threshold``."""
    rows = np.asarray(probabilities)
    best = rows.argmax(axis=1)
    confidence = np.take_along_axis(rows, best[:, None], axis=1)[:, 0].astype(np.float64)
    return np.where(confidence >= threshold, best, ABSTAIN)


def answered(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Which rows the rule answers (a boolean per row)."""
    return decide(probabilities, threshold) != ABSTAIN


def decided_labels(
    labels: Sequence[str], probabilities: np.ndarray, threshold: float
) -> list[str | None]:
    """Each row's answer as a label, or None where it abstains."""
    return [labels[int(i)] if i != ABSTAIN else None for i in decide(probabilities, threshold)]


def chosen(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Multi-label: for each row of ``probabilities`` (``(n, labels)``), which labels
    are answered (a boolean per label): those whose probability reaches that label's
    threshold. A row may choose none ("none of these")."""
    rows = np.asarray(probabilities).astype(np.float64)
    return rows >= np.asarray(thresholds, np.float64)[None, :]
