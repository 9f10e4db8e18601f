"""models.drift: the MMD permutation test on pooled features, and the reference file."""

from __future__ import annotations

import numpy as np
import pytest

from models import drift

WIDTH = 64  # a small backbone's pooled features


def _features(rng: np.random.Generator, rows: int, shift: float = 0.0) -> np.ndarray:
    """Pooled-feature-like rows: non-negative (after a ReLU), correlated columns."""
    mixing = np.random.default_rng(99).normal(0, 1, (8, WIDTH))
    latent = rng.normal(0, 1, (rows, 8))
    return np.maximum(latent @ mixing + 1.0 + shift, 0.0).astype(np.float32)


def test_no_drift_between_two_samples_of_one_distribution():
    rng = np.random.default_rng(1)
    found = drift.mmd_test(_features(rng, 256), _features(rng, 120))
    assert not found.drifted
    assert found.p_value > drift.SIGNIFICANCE
    assert (found.images, found.reference_rows) == (120, 256)


def test_a_mean_shift_is_drift():
    rng = np.random.default_rng(2)
    found = drift.mmd_test(_features(rng, 256), _features(rng, 120, shift=0.5))
    assert found.drifted
    assert found.p_value == pytest.approx(1 / (drift.PERMUTATIONS + 1))
    same = drift.mmd_test(_features(rng, 256), _features(rng, 120))
    assert found.score > 3 * same.score


def test_false_alarms_over_20_unshifted_streams_at_most_one():
    """Issue 29's figure: 20 streams of the monitor's size against one reference of
    the bundle's size, drawn from one distribution, raise drift at most once."""
    rng = np.random.default_rng(3)
    reference = _features(rng, drift.REFERENCE_ROWS)
    tests = [drift.mmd_test(reference, _features(rng, 200), seed=k) for k in range(20)]
    p_values = np.array([t.p_value for t in tests])
    assert sum(t.drifted for t in tests) <= 1
    assert 0.2 < p_values.mean() < 0.8  # about uniform under no drift, not stuck at 1


def test_the_p_value_counts_the_observed_split():
    rng = np.random.default_rng(4)
    found = drift.mmd_test(_features(rng, 40), _features(rng, 40), permutations=9)
    assert found.p_value * 10 == pytest.approx(round(found.p_value * 10))
    assert found.p_value >= 0.1


def test_samples_of_other_widths_are_refused():
    with pytest.raises(ValueError, match="one width"):
        drift.mmd_test(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        drift.mmd_test(np.zeros((5, 3)), np.zeros((0, 3)))


def test_identical_rows_do_not_divide_by_zero():
    same = np.ones((35, 4), np.float32)
    found = drift.mmd_test(same, same)
    assert found.score == pytest.approx(0.0, abs=1e-9)
    assert not found.drifted


def test_reference_sample_and_file_round_trip(tmp_path):
    rows = _features(np.random.default_rng(5), 300)
    sample = drift.reference_sample(rows, 256)
    assert sample.shape == (256, WIDTH)
    assert drift.reference_sample(rows[:10], 256).shape == (10, WIDTH)
    path = tmp_path / drift.REFERENCE_FILE
    path.write_bytes(drift.reference_bytes(sample))
    assert np.load(path).dtype == np.float16
    np.testing.assert_allclose(drift.read_reference(path), sample, rtol=1e-3, atol=1e-3)


def test_a_reference_too_large_for_float16_stays_float32(tmp_path):
    path = tmp_path / drift.REFERENCE_FILE
    path.write_bytes(drift.reference_bytes(np.full((3, 2), 1e6, np.float32)))
    assert np.load(path).dtype == np.float32
    np.testing.assert_allclose(drift.read_reference(path), 1e6)
