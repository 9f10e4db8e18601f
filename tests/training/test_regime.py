"""How a phase learns: targets smoothed and mixed, schedules, layer-wise decay."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.fitting import finetune
from training.fitting.regime import (
    LayerwiseAdam,
    Regime,
    layer_factors,
    learning_rate,
    soften,
)


def _batch(n: int = 8, classes: int = 3):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8), np.arange(n) % classes


def test_validation_targets_are_plain_one_hot_whatever_the_regime():
    x, y = _batch()
    regime = Regime(label_smoothing=0.1, mixup=0.4, cutmix=1.0)
    out_x, targets = soften(x, y, 3, regime, np.random.default_rng(1), training=False)
    assert out_x is x
    np.testing.assert_array_equal(targets, np.eye(3)[y])


def test_label_smoothing_moves_mass_off_the_true_class():
    x, y = _batch()
    _, targets = soften(x, y, 3, Regime(label_smoothing=0.3), np.random.default_rng(1), True)
    assert targets.max(axis=1) == pytest.approx(0.8)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)


def test_mixup_mixes_images_and_targets_by_the_same_weight():
    x, y = _batch()
    mixed, targets = soften(x, y, 3, Regime(mixup=0.4), np.random.default_rng(2), True)
    assert mixed.dtype == np.float32
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)
    assert ((targets > 0) & (targets < 1)).any(), "some targets mix two classes"
    # every mixed pixel lies between the pixels of the two images it mixes
    assert mixed.min() >= 0 and mixed.max() <= 255


def test_cutmix_pastes_a_box_and_weighs_targets_by_its_area():
    x, y = _batch()
    pasted, targets = soften(x, y, 3, Regime(cutmix=1.0), np.random.default_rng(3), True)
    changed = (pasted != x).any(axis=-1).mean(axis=(1, 2))  # share of each image replaced
    kept = 1 - changed.max()
    true_share = targets[np.arange(len(y)), y]
    assert true_share.min() == pytest.approx(kept, abs=0.1) or true_share.min() >= kept - 0.1


def test_batches_with_soft_targets_are_the_same_for_an_epoch_however_reached():
    x, y = _batch(20)
    soft = (3, Regime(mixup=0.4))
    whole = list(finetune.batches(x, y, np.arange(20), 5, shuffle=True, seed=7, soft=soft))
    skip = finetune.batches(x, y, np.arange(20), 5, shuffle=True, seed=7, soft=soft)
    list(skip)  # epoch 0
    second = list(skip)
    resumed = list(
        finetune.batches(x, y, np.arange(20), 5, shuffle=True, seed=7, soft=soft, first_epoch=1)
    )
    for (a, b), (c, d) in zip(second, resumed, strict=True):
        np.testing.assert_array_equal(a.numpy(), c.numpy())
        np.testing.assert_array_equal(b.numpy(), d.numpy())
    assert whole[0][1].shape == (5, 3)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_schedules_warm_up_peak_at_the_rate_and_come_down(schedule):
    rate = learning_rate(Regime(schedule=schedule), 1e-3, 100)
    values = [float(rate(step)) for step in range(100)]
    assert values[0] < 1e-3 / 2
    assert max(values) == pytest.approx(1e-3, rel=0.05)
    assert values[-1] < 1e-4
    assert learning_rate(Regime(), 1e-3, 100) == 1e-3


def test_layerwise_decay_moves_lower_layers_less():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    low = keras.layers.Dense(4, name="low")
    high = keras.layers.Dense(2, name="high")
    model = keras.Model(inputs, high(low(inputs)))
    factors = layer_factors([low, high], 0.1)
    assert factors[id(high.kernel.value)] == 1.0
    assert factors[id(low.kernel.value)] == pytest.approx(0.1)
    model.compile(LayerwiseAdam(factors, learning_rate=0.01), loss="mse")
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(32, 4)), rng.normal(size=(32, 2)), epochs=3, verbose=0)
    moved = [np.abs(a - b).mean() for a, b in zip(model.get_weights(), before, strict=True)]
    low_moved, high_moved = moved[0], moved[2]  # kernels
    assert low_moved < high_moved / 3
