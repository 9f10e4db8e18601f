"""Classifier: one traced forward pass, safe from many threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest

from models.bundle import Bundle
from models.engines.inference import Classifier
from tests.models.conftest import IMAGE_SIZE, LABELS, make_tiny_model


@pytest.fixture(scope="module")
def classifier(tiny_bundle) -> Classifier:
    return Classifier(tiny_bundle)


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *IMAGE_SIZE, 3), dtype=np.uint8)


@pytest.mark.parametrize("n", [1, 5])
def test_predict_matches_the_model(classifier, tiny_bundle, n):
    pixels = _pixels(n, seed=n)
    probabilities = classifier.predict(pixels)
    assert probabilities.shape == (n, len(LABELS))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    expected = keras.ops.convert_to_numpy(
        tiny_bundle.model(pixels.astype("float32"), training=False)
    )
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_predict_depends_on_the_pixels(classifier):
    rows = classifier.predict(np.concatenate([_pixels(1, seed=1), np.zeros_like(_pixels(1))]))
    assert not np.allclose(rows[0], rows[1], atol=1e-4)


def test_predict_from_many_threads(classifier):
    batches = [_pixels(2, seed=seed) for seed in range(8)]
    expected = [classifier.predict(batch) for batch in batches]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(classifier.predict, batches))
    for result, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(result, want, atol=1e-6)


def test_warm_up_refuses_a_model_that_does_not_fit_its_labels(tiny_bundle):
    metadata = tiny_bundle.metadata.replace(labels=["a", "b"])
    wrong = Bundle(tiny_bundle.path, metadata, make_tiny_model())
    with pytest.raises(ValueError, match="warm-up"):
        Classifier(wrong)
