"""The native predict body of API.md: one typed model for the HTTP route,
``ktl predict --json`` and ``Bundle.predict`` (the Python API)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from models import load_bundle
from models.predictions import format_prediction, predict_response
from models.preprocessing import load_image
from tests.models.conftest import IMAGE_SIZE, LABELS


def _entry(labels, probabilities, top_k, filename) -> dict:
    return format_prediction(labels, probabilities, top_k, filename).model_dump(mode="json")


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *IMAGE_SIZE, 3), dtype=np.uint8)


PROBABILITIES = np.array([0.1, 0.6, 0.05, 0.25], dtype=np.float32)
FOUR = ["daisy", "rose", "tulip", "lily"]


def test_top_is_sorted_highest_first():
    entry = _entry(FOUR, PROBABILITIES, 4, "rose.jpg")
    assert [item["label"] for item in entry["top"]] == ["rose", "lily", "daisy", "tulip"]
    assert [item["index"] for item in entry["top"]] == [1, 3, 0, 2]
    probabilities = [item["probability"] for item in entry["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert probabilities[0] == pytest.approx(0.6)


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_top_k_is_respected(top_k):
    entry = _entry(FOUR, PROBABILITIES, top_k, None)
    assert len(entry["top"]) == top_k
    assert entry["top"][0]["label"] == "rose"
    assert len(entry["probabilities"]) == len(FOUR)  # every label, whatever top_k


def test_ties_keep_label_order():
    entry = _entry(["a", "b", "c"], np.array([0.25, 0.5, 0.25]), 3, None)
    assert [item["label"] for item in entry["top"]] == ["b", "a", "c"]


def test_probabilities_are_keyed_by_label():
    entry = _entry(FOUR, PROBABILITIES, 2, "x.png")
    assert list(entry["probabilities"]) == FOUR
    for label, value in zip(FOUR, PROBABILITIES, strict=True):
        assert entry["probabilities"][label] == pytest.approx(float(value))
    assert entry["filename"] == "x.png"


def test_predict_response_has_exactly_the_documented_shape(tiny_bundle):
    rows = tiny_bundle.classifier.predict(_pixels(2))
    response = predict_response(tiny_bundle, rows, ["rose.jpg", None], top_k=2).model_dump(
        mode="json"
    )
    # Round-trip through JSON: only plain JSON types, nothing NumPy.
    assert json.loads(json.dumps(response)) == response
    assert set(response) == {"model", "version", "predictions"}
    assert response["model"] == "flowers"
    assert response["version"] == 1 and isinstance(response["version"], int)
    assert [p["filename"] for p in response["predictions"]] == ["rose.jpg", None]
    for prediction, row in zip(response["predictions"], rows, strict=True):
        assert set(prediction) == {"id", "filename", "top", "probabilities", "decision"}
        assert prediction["decision"]["label"] == prediction["top"][0]["label"]
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


def test_the_python_api_loads_by_path_or_by_name(tiny_bundle):
    by_path = load_bundle(tiny_bundle.path)
    by_name = load_bundle("flowers", store=tiny_bundle.path.parent.parent)
    assert (by_path.name, by_path.version) == (by_name.name, by_name.version) == ("flowers", 1)


def test_bundle_predict_takes_files_and_arrays_alike(tiny_bundle, tmp_path):
    rng = np.random.default_rng(5)
    array = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    from_file = tiny_bundle.predict([tmp_path / "a.png"], top_k=2).model_dump()
    from_array = tiny_bundle.predict([array], top_k=2).model_dump()
    assert from_file["predictions"][0]["filename"] == "a.png"
    assert from_array["predictions"][0]["filename"] is None
    assert from_file["predictions"][0]["top"] == from_array["predictions"][0]["top"]
    expected = tiny_bundle.classifier.predict(load_image(tmp_path / "a.png", IMAGE_SIZE)[None])
    assert from_file["predictions"][0]["probabilities"] == pytest.approx(
        dict(zip(LABELS, expected[0].tolist(), strict=True)), abs=1e-6
    )


@pytest.mark.parametrize(("threshold", "label"), [(0.0, "rose"), (0.6, "rose"), (0.61, None)])
def test_the_decision_is_the_top_label_only_at_or_above_the_threshold(threshold, label):
    entry = format_prediction(FOUR, PROBABILITIES, 2, None, threshold)
    assert entry.decision.label == label
    assert entry.decision.confidence == pytest.approx(0.6)
    assert entry.decision.threshold == threshold


def test_a_request_threshold_overrides_the_versions(tiny_bundle):
    rows = np.array([[0.2, 0.5, 0.3]])
    assert predict_response(tiny_bundle, rows, [None], 1).predictions[0].decision.label == "rose"
    quiet = predict_response(tiny_bundle, rows, [None], 1, min_confidence=0.9)
    assert quiet.predictions[0].decision.label is None
