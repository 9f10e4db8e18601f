"""Temperature scaling and the figures that judge calibration."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.calibration import (
    brier,
    checked_temperature,
    ece,
    fit_temperature,
    nll,
    scale,
)


def _overconfident(n: int = 2000, seed: int = 0):
    """Probabilities of a model right 70 % of the time but 95 % sure of itself."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 3, n)
    predicted = np.where(rng.random(n) < 0.7, targets, (targets + rng.integers(1, 3, n)) % 3)
    probabilities = np.full((n, 3), 0.025)
    probabilities[np.arange(n), predicted] = 0.95
    return probabilities, targets


def test_scale_is_temperature_on_the_logits():
    logits = np.array([[2.0, 0.5, -1.0]])
    probabilities = np.exp(logits) / np.exp(logits).sum()
    expected = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum()
    np.testing.assert_allclose(scale(probabilities, 2.5), expected, rtol=1e-12)
    np.testing.assert_allclose(scale(probabilities, 1.0), probabilities, rtol=1e-12)


def test_an_overconfident_model_is_cooled_and_its_figures_improve():
    probabilities, targets = _overconfident()
    temperature = fit_temperature(probabilities, targets)
    assert temperature > 1.5
    calibrated = scale(probabilities, temperature)
    assert nll(calibrated, targets) < nll(probabilities, targets)
    assert ece(calibrated, targets) < ece(probabilities, targets) / 3
    assert calibrated.max(axis=1).mean() == pytest.approx(0.7, abs=0.03)


def test_a_perfect_validation_split_does_not_make_every_answer_certain():
    targets = np.arange(30) % 3
    probabilities = np.full((30, 3), 0.05)
    probabilities[np.arange(30), targets] = 0.9
    assert 0.2 < fit_temperature(probabilities, targets) < 1.0


def test_ece_and_brier_of_perfect_and_hopeless_answers():
    targets = np.array([0, 1, 2])
    sure_and_right = np.eye(3)
    assert ece(sure_and_right, targets) == pytest.approx(0.0)
    assert brier(sure_and_right, targets) == pytest.approx(0.0)
    sure_and_wrong = np.roll(np.eye(3), 1, axis=1)
    assert ece(sure_and_wrong, targets) == pytest.approx(1.0)
    assert brier(sure_and_wrong, targets) == pytest.approx(2.0)


def test_a_temperature_that_does_not_carry_over_is_not_used():
    """One half of the images asks to be cooled, the other to be sharpened: a
    temperature fitted on either makes the other worse."""
    over, over_targets = _overconfident(100, seed=1)  # 95 % sure, 70 % right
    under_targets = np.arange(100) % 3
    under = np.full((100, 3), 0.2)
    under[np.arange(100), under_targets] = 0.6  # 60 % sure, always right
    probabilities = np.empty((200, 3))
    targets = np.empty(200, int)
    probabilities[0::2], targets[0::2] = over, over_targets
    probabilities[1::2], targets[1::2] = under, under_targets
    temperature, how = checked_temperature(probabilities, targets)
    assert temperature == 1.0 and "did not lower" in how


def test_a_temperature_that_carries_over_is_used():
    probabilities, targets = _overconfident()
    temperature, how = checked_temperature(probabilities, targets)
    assert temperature > 1.5 and "checked by halves" in how
