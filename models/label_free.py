"""Label-free estimates of a model's accuracy on unlabelled images, from its
calibrated probabilities (Garg et al., "Leveraging unlabeled data to predict
out-of-distribution performance", ICLR 2022):

- AC, average confidence: the mean top probability; right as far as the
  calibration holds on the new images.
- ATC, average thresholded confidence: the share of images whose top probability
  exceeds a threshold fitted on validation so that, there, that share equals the
  accuracy. It holds up better under shift than AC.
"""

from __future__ import annotations

import numpy as np


def atc_threshold(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The threshold t with mean(top probability > t) = accuracy on this labelled split."""
    confidence = probabilities.max(axis=1)
    accuracy = float((probabilities.argmax(axis=1) == targets).mean())
    if accuracy >= 1.0:
        return float(np.nextafter(confidence.min(), -np.inf))  # every image above it
    return float(np.quantile(confidence, 1.0 - accuracy, method="lower"))


def average_confidence(confidence: np.ndarray) -> float:
    return float(confidence.mean())


def average_thresholded_confidence(confidence: np.ndarray, cutoff: float) -> float:
    """The share of top probabilities over ``cutoff`` (``atc_threshold``'s). Not the
    decision rule (``models.decision``): another cut-off, and strictly over it."""
    return float((confidence > cutoff).mean())
