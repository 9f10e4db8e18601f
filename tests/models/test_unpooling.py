from __future__ import annotations

import keras
import numpy as np
import pytest

from models.insight.unpooling import MaxPoolingWithArgmax2D, MaxUnpooling2D

GRID = np.array(
    [[1, 2, 0, 1],
     [3, 0, 1, 5],
     [0, 1, 2, 2],
     [4, 0, 3, 1]], np.float32,
)  # fmt: skip


def test_pooling_records_where_each_maximum_was():
    pooled, argmax = MaxPoolingWithArgmax2D(2)(GRID.reshape(1, 4, 4, 1))
    np.testing.assert_array_equal(pooled.numpy()[0, ..., 0], [[3, 5], [4, 3]])
    # row * 4 + column in the 4x4 input
    np.testing.assert_array_equal(argmax.numpy()[0, ..., 0], [[4, 7], [12, 14]])


def test_unpooling_puts_values_back_with_zeros_elsewhere():
    pooled, argmax = MaxPoolingWithArgmax2D(2)(GRID.reshape(1, 4, 4, 1))
    restored = MaxUnpooling2D(2)([pooled, argmax]).numpy()[0, ..., 0]
    expected = [[0, 0, 0, 0], [3, 0, 0, 5], [0, 0, 0, 0], [4, 0, 3, 0]]
    np.testing.assert_array_equal(restored, expected)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_odd_sizes_round_trip_per_sample_and_channel(padding):
    rng = np.random.default_rng(0)
    x = rng.random((2, 5, 7, 3)).astype(np.float32)
    pooled, argmax = MaxPoolingWithArgmax2D(2, padding=padding)(x)
    assert pooled.shape == ((2, 2, 3, 3) if padding == "valid" else (2, 3, 4, 3))
    for restored in (
        MaxUnpooling2D(2, padding=padding)([pooled, argmax, x]).numpy(),
        MaxUnpooling2D(2, padding=padding, output_size=(5, 7))([pooled, argmax]).numpy(),
    ):
        assert restored.shape == x.shape
        kept = restored != 0
        np.testing.assert_array_equal(restored[kept], x[kept])  # each maximum at its place
        for b in range(2):
            for c in range(3):
                assert sorted(restored[b, ..., c][kept[b, ..., c]]) == sorted(
                    pooled.numpy()[b, ..., c].ravel()
                )


def test_output_size_is_computed_when_not_given():
    pooled, argmax = MaxPoolingWithArgmax2D(3, strides=2)(np.ones((1, 9, 9, 2), np.float32))
    assert MaxUnpooling2D(3, strides=2)([pooled, argmax]).shape == (1, 9, 9, 2)
    assert MaxUnpooling2D(3, strides=2).compute_output_shape([(None, 4, 4, 2)] * 2) == (
        None, 9, 9, 2,
    )  # fmt: skip


def test_a_model_with_both_layers_saves_and_loads_in_safe_mode(tmp_path):
    inputs = keras.Input((5, 7, 3))
    pooled, argmax = MaxPoolingWithArgmax2D(2, name="pool")(inputs)
    outputs = MaxUnpooling2D(2, name="unpool")([pooled, argmax, inputs])
    model = keras.Model(inputs, outputs)
    assert model.output_shape == (None, 5, 7, 3)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = np.random.default_rng(1).random((1, 5, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert type(loaded.get_layer("unpool")) is MaxUnpooling2D
    assert loaded.get_layer("pool").get_config()["pool_size"] == [2, 2]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="padding"):
        MaxUnpooling2D(2, padding="full")
    with pytest.raises(ValueError, match="pool_size"):
        MaxPoolingWithArgmax2D(0)
