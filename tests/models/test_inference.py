"""Classifier (one traced forward pass) and the native predict response shape of API.md."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest

from models.bundle import Bundle
from models.inference import Classifier, format_prediction, predict_response
from tests.models.tiny import IMAGE_SIZE, LABELS, make_tiny_model


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
    metadata = {**tiny_bundle.metadata, "labels": ["a", "b"]}
    wrong = Bundle(tiny_bundle.path, metadata, make_tiny_model())
    with pytest.raises(ValueError, match="warm-up"):
        Classifier(wrong)


# -- response shape -------------------------------------------------------------------------

PROBABILITIES = np.array([0.1, 0.6, 0.05, 0.25], dtype=np.float32)
FOUR = ["daisy", "rose", "tulip", "lily"]


def test_top_is_sorted_highest_first():
    entry = format_prediction(FOUR, PROBABILITIES, 4, "rose.jpg")
    assert [item["label"] for item in entry["top"]] == ["rose", "lily", "daisy", "tulip"]
    assert [item["index"] for item in entry["top"]] == [1, 3, 0, 2]
    probabilities = [item["probability"] for item in entry["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert probabilities[0] == pytest.approx(0.6)


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_top_k_is_respected(top_k):
    entry = format_prediction(FOUR, PROBABILITIES, top_k, None)
    assert len(entry["top"]) == top_k
    assert entry["top"][0]["label"] == "rose"
    assert len(entry["probabilities"]) == len(FOUR)  # every label, whatever top_k


def test_ties_keep_label_order():
    entry = format_prediction(["a", "b", "c"], np.array([0.25, 0.5, 0.25]), 3, None)
    assert [item["label"] for item in entry["top"]] == ["b", "a", "c"]


def test_probabilities_are_keyed_by_label():
    entry = format_prediction(FOUR, PROBABILITIES, 2, "x.png")
    assert list(entry["probabilities"]) == FOUR
    for label, value in zip(FOUR, PROBABILITIES, strict=True):
        assert entry["probabilities"][label] == pytest.approx(float(value))
    assert entry["filename"] == "x.png"


def test_predict_response_has_exactly_the_documented_shape(classifier, tiny_bundle):
    rows = classifier.predict(_pixels(2))
    response = predict_response(tiny_bundle, rows, ["rose.jpg", None], top_k=2)
    # Round-trip through JSON: only plain JSON types, nothing NumPy.
    assert json.loads(json.dumps(response)) == response
    assert set(response) == {"model", "version", "predictions"}
    assert response["model"] == "flowers"
    assert response["version"] == 1 and isinstance(response["version"], int)
    assert [p["filename"] for p in response["predictions"]] == ["rose.jpg", None]
    for prediction, row in zip(response["predictions"], rows, strict=True):
        assert set(prediction) == {"filename", "top", "probabilities"}
        assert len(prediction["top"]) == 2
        for item in prediction["top"]:
            assert set(item) == {"label", "index", "probability"}
            assert type(item["index"]) is int and type(item["probability"]) is float
            assert item["label"] == LABELS[item["index"]]
            assert item["probability"] == pytest.approx(float(row[item["index"]]))
        assert list(prediction["probabilities"]) == LABELS
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction["top"][0]["probability"] == max(prediction["probabilities"].values())


def test_predict_response_needs_a_filename_per_row(tiny_bundle):
    with pytest.raises(ValueError):
        predict_response(tiny_bundle, np.full((2, 3), 1 / 3), ["only-one.jpg"], top_k=1)
