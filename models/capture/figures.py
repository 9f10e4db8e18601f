"""The monitor's figures of one model version over a window, from its logged
predictions and the feedback on them: requests, abstain rate, the confidence
histogram, the predicted class mix against the test split's, the label-free
accuracy estimate and the accuracy from feedback with its Wilson interval."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.intervals import wilson
from models.label_free import average_confidence, average_thresholded_confidence
from models.metadata import BundleMetadata

EDGES = tuple(round(0.1 * step, 1) for step in range(11))  # the confidence histogram's bins


def mix_on_test(metadata: BundleMetadata | None) -> dict[str, float] | None:
    """The share of each label among the version's answers on its test split (the
    columns of its confusion matrix), or None without one."""
    test = metadata.evaluation.test if metadata and metadata.evaluation else None
    if test is None or test.confusion_matrix is None:
        return None
    columns = np.asarray(test.confusion_matrix.matrix).sum(axis=0)
    total = columns.sum()
    if not total:
        return None
    labels = test.confusion_matrix.labels
    return {label: round(float(c / total), 6) for label, c in zip(labels, columns, strict=True)}


def feedback_accuracy(feedback: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy of the decisions callers told the true label of (an abstained decision
    counts as wrong), with its 95 % Wilson interval."""
    right = sum(bool(record["correct"]) for record in feedback)
    n = len(feedback)
    low, high = wilson(right, n)
    return {
        "count": n,
        "correct": right,
        "accuracy": round(right / n, 6) if n else None,
        "interval": [round(low, 6), round(high, 6)] if n else None,
    }


def _estimates(confidences: np.ndarray, metadata: BundleMetadata | None) -> dict[str, Any]:
    """The label-free accuracy estimates (``models.label_free``); ATC where the version
    has its threshold (bundles trained before it was saved do not)."""
    if not len(confidences):
        return {"average_confidence": None, "average_thresholded_confidence": None}
    monitoring = metadata.monitoring if metadata is not None else None
    threshold = monitoring.atc_threshold if monitoring is not None else None
    atc = None
    if threshold is not None:
        atc = round(average_thresholded_confidence(confidences, threshold), 6)
    return {
        "average_confidence": round(average_confidence(confidences), 6),
        "average_thresholded_confidence": atc,
    }


def version_figures(
    lines: Sequence[Mapping[str, Any]],
    feedback: Sequence[Mapping[str, Any]],
    metadata: BundleMetadata | None,
) -> dict[str, Any]:
    """The monitor's entry of one version (see the module's docstring)."""
    n = len(lines)
    confidences = np.array([line["confidence"] for line in lines], np.float64)
    counts, _ = np.histogram(confidences, bins=EDGES)
    abstained = sum(line["label"] is None for line in lines)
    mix = Counter(line["top"] for line in lines)
    live_mix = {label: round(count / n, 6) for label, count in sorted(mix.items())}
    reference = mix_on_test(metadata)
    distance = None
    if reference is not None and n:
        labels = set(reference) | set(live_mix)
        gaps = (abs(live_mix.get(label, 0.0) - reference.get(label, 0.0)) for label in labels)
        distance = round(0.5 * sum(gaps), 6)
    return {
        "requests": n,
        "abstained": abstained,
        "abstain_rate": round(abstained / n, 6) if n else None,
        "confidence_histogram": {"edges": list(EDGES), "counts": counts.tolist()},
        "class_mix": live_mix,
        "test_class_mix": reference,
        "class_mix_distance": distance,
        "estimated_accuracy": _estimates(confidences, metadata),
        "feedback": feedback_accuracy(feedback),
    }
