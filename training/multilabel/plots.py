"""A multi-label version's report plot: the precision-recall curve of every label on
the split its figures come from, with the point its threshold chose."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from models.decision import chosen
from training.publishing.report import _png


def pr_curves_png(
    probabilities: np.ndarray, targets: np.ndarray, labels: list[str], thresholds: np.ndarray
) -> bytes:
    """One curve per label (precision against recall as the cut moves down the
    ranking); a dot where the label's threshold cuts."""
    figure, axis = plt.subplots(figsize=(5.5, 4.2))
    picked = chosen(probabilities, thresholds)
    for k, label in enumerate(labels):
        positives = targets[:, k].sum()
        if not positives:
            continue
        order = np.argsort(-probabilities[:, k], kind="stable")
        right = np.cumsum(targets[order, k])
        precision = right / np.arange(1, len(order) + 1)
        (line,) = axis.plot(right / positives, precision, label=label)
        answered = picked[:, k].sum()
        if answered:
            hits = (picked[:, k] * targets[:, k]).sum()
            axis.plot(hits / positives, hits / answered, "o", color=line.get_color())
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    axis.set_title("Precision-recall per label (dot: its threshold)")
    axis.legend(loc="lower left")
    return _png(figure)
