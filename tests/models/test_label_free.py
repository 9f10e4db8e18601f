from __future__ import annotations

import numpy as np
import pytest

from models.label_free import atc_threshold, average_confidence, average_thresholded_confidence


def _split(rng, n: int, accuracy: float):
    """Probabilities of 3 classes whose top is right with probability ``accuracy``
    and whose confidence is drawn so that they are calibrated."""
    confidence = rng.uniform(0.4, 1.0, n)
    right = rng.uniform(size=n) < confidence
    targets = rng.integers(0, 3, n)
    top = np.where(right, targets, (targets + 1) % 3)
    probabilities = np.full((n, 3), 0.0)
    probabilities[np.arange(n), top] = confidence
    others = (1 - confidence) / 2
    for k in range(3):
        probabilities[:, k] = np.where(top == k, confidence, others)
    return probabilities, targets


def test_on_its_own_split_atc_recovers_the_accuracy():
    rng = np.random.default_rng(0)
    probabilities, targets = _split(rng, 4000, 0.7)
    accuracy = float((probabilities.argmax(axis=1) == targets).mean())
    threshold = atc_threshold(probabilities, targets)
    estimate = average_thresholded_confidence(probabilities.max(axis=1), threshold)
    assert estimate == pytest.approx(accuracy, abs=0.005)


def test_on_new_images_of_the_same_kind_both_estimates_are_close():
    rng = np.random.default_rng(1)
    val_p, val_t = _split(rng, 4000, 0.7)
    live_p, live_t = _split(rng, 4000, 0.7)
    truth = float((live_p.argmax(axis=1) == live_t).mean())
    threshold = atc_threshold(val_p, val_t)
    confidence = live_p.max(axis=1)
    assert average_thresholded_confidence(confidence, threshold) == pytest.approx(truth, abs=0.03)
    assert average_confidence(confidence) == pytest.approx(truth, abs=0.03)


def test_a_perfect_split_puts_every_image_above_the_threshold():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    threshold = atc_threshold(probabilities, np.array([0, 1, 0]))
    assert average_thresholded_confidence(probabilities.max(axis=1), threshold) == 1.0
