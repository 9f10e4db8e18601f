"""Test-time augmentation's views and their average."""

from __future__ import annotations

import numpy as np
import pytest

from models.engines.tta import VIEWS, averaged, views, with_tta


def _images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)


def test_views_are_the_image_its_mirror_and_four_corner_crops_at_full_size():
    images = _images()
    out = views(images).numpy()
    assert out.shape == (len(VIEWS) * 2, 16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:2], images)
    np.testing.assert_array_equal(out[2:4], images[:, :, ::-1])
    # 14 of 16 pixels (87.5 %) of the top-left corner, stretched back to 16
    assert not np.array_equal(out[4:6], images)
    flat = np.full((1, 16, 16, 3), 77, np.uint8)
    np.testing.assert_array_equal(views(flat).numpy(), np.full((6, 16, 16, 3), 77))


def test_corner_crops_see_different_corners():
    image = np.zeros((1, 16, 16, 3), np.uint8)
    image[0, 0, 0] = 255  # only the top-left corner is bright
    crops = views(image).numpy()[2:]
    assert crops[0].max() > 0, "the top-left crop keeps the bright pixel"
    assert crops[3].max() == 0, "the bottom-right crop does not"


def test_the_average_is_per_image_over_its_views():
    rows = np.zeros((len(VIEWS) * 2, 3), np.float32)
    rows[0::2] = [1, 0, 0]  # image 0: class 0 in every view
    rows[1::2] = [0, 1, 0]
    rows[3] = [0, 0, 1]  # image 1, mirrored: class 2
    got = averaged(rows, 2)
    np.testing.assert_allclose(got[0], [1, 0, 0])
    np.testing.assert_allclose(got[1], [0, 5 / 6, 1 / 6])
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_with_tta_answers_with_the_mean_of_the_views():
    calls = []

    def forward(pixels):
        calls.append(int(pixels.shape[0]))
        brightness = np.asarray(pixels, np.float32).mean(axis=(1, 2, 3)) / 255
        return np.stack([brightness, 1 - brightness], axis=1)

    images = _images()
    got = with_tta(forward)(images).numpy()
    assert calls == [len(VIEWS) * 2], "one forward pass over every view"
    want = forward(views(images)).reshape(len(VIEWS), 2, 2).mean(axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[0, 0] == pytest.approx(forward(images)[0, 0], abs=0.05)
