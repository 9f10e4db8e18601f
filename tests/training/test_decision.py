"""The decision threshold's rules, and the figures around it (no model here: the
held-out-class measurement on a trained model is tests/e2e/test_trust_e2e.py)."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import ConfigError
from training.evaluation.decision import auroc, choose_threshold, risk_coverage, selective


def _model(n: int = 400, seed: int = 0):
    """Confidences from 0.4 to 1; right more often when surer."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.4, 1.0, n)
    targets = rng.integers(0, 2, n)
    right = rng.random(n) < confidence
    predicted = np.where(right, targets, 1 - targets)
    probabilities = np.zeros((n, 2))
    probabilities[np.arange(n), predicted] = confidence
    probabilities[np.arange(n), 1 - predicted] = 1 - confidence
    return probabilities, targets


def test_auto_answers_95_percent_of_validation_and_never_zero_for_a_good_model():
    probabilities, targets = _model()
    choice = choose_threshold(probabilities, targets, "auto")
    answered = selective(probabilities, targets, choice.threshold)
    assert answered.coverage == pytest.approx(0.95, abs=0.005)
    assert choice.threshold > 0.4


def test_a_target_accuracy_picks_the_lowest_threshold_reaching_it():
    probabilities, targets = _model()
    choice = choose_threshold(probabilities, targets, "auto", target_accuracy=0.9)
    answered = selective(probabilities, targets, choice.threshold)
    assert answered.selective_accuracy >= 0.9
    lower = selective(probabilities, targets, choice.threshold - 1e-6)
    assert lower.answered == answered.answered or lower.selective_accuracy < 0.9


def test_an_unreachable_target_falls_back_to_auto_and_says_so():
    probabilities, targets = _model()
    probabilities = probabilities[:, ::-1].copy()  # always wrong when sure
    choice = choose_threshold(probabilities, targets, "auto", target_accuracy=0.99)
    assert "no threshold reaches accuracy 0.99" in choice.note
    assert choice.rule.startswith("answers 95%")


def test_a_number_fixes_the_threshold_and_junk_is_refused():
    probabilities, targets = _model()
    fixed = choose_threshold(probabilities, targets, 0.7)
    assert (fixed.threshold, fixed.rule) == (0.7, "fixed (--min-confidence)")
    with pytest.raises(ConfigError):
        choose_threshold(probabilities, targets, "sometimes")


def test_risk_coverage_starts_with_the_surest_answers():
    probabilities, targets = _model()
    curve = risk_coverage(probabilities, targets)
    assert curve[-1][0] == 1.0
    assert np.mean([a for _, a in curve[:40]]) > curve[-1][1]


def test_auroc():
    assert auroc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert auroc(np.array([0.1, 0.2]), np.array([0.9, 0.8])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5
