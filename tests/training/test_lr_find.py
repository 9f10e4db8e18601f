"""The learning-rate range test and its valley rule."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from training.fitting.lr_find import range_test, valley
from training.fitting.regime import Regime


def test_the_valley_rule_picks_a_rate_on_the_longest_fall():
    rates = list(np.logspace(-7, 1, 80))
    losses = [2.0] * 20 + list(np.linspace(2.0, 0.5, 40)) + list(np.linspace(0.5, 9.0, 20))
    chosen = valley(rates, losses)
    assert rates[25] < chosen < rates[55], "inside the fall, well before the minimum turns"


def test_a_range_test_suggests_a_sane_rate_and_leaves_the_model_as_it_was():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    before = [w.copy() for w in model.get_weights()]
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    test = range_test(model, data, Regime(), steps=80)
    assert 1e-5 < test.suggestion < 1.0
    assert len(test.rates) == len(test.losses) <= 80
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)
