"""A bundle published by ktl 0.1 (metadata format 1, kept in tests/fixtures) still
loads and serves, with the answers it gave then."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def legacy_client(make_app, tmp_path):
    shutil.copytree(FIXTURES / "store_v1", tmp_path / "store")
    return make_app(model_store=tmp_path / "store").test_client()


def test_a_format_1_bundle_serves_what_it_answered_then(legacy_client):
    expected = json.loads((FIXTURES / "store_v1_predictions.json").read_text())
    response = legacy_client.post(
        "/v1/models/legacy/predict",
        data={
            "image": [(io.BytesIO((FIXTURES / n).read_bytes()), n) for n in ("red.png", "blue.png")]
        },
    )
    assert response.status_code == 200
    body = response.json
    for prediction in body["predictions"]:
        decision = prediction.pop("decision")  # no threshold then: it always answers
        assert decision["threshold"] == 0 and decision["label"] == prediction["top"][0]["label"]
    for got, want in zip(body["predictions"], expected["predictions"], strict=True):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
        assert [t["label"] for t in got["top"]] == [t["label"] for t in want["top"]]
    metadata = legacy_client.get("/v1/models/legacy").json
    stored = json.loads((FIXTURES / "store_v1/legacy/1/metadata.json").read_text())
    training, served_training = stored.pop("training"), metadata.pop("training")
    assert metadata == stored
    # No server path leaves the service: the dataset relative to itself, no store.
    assert served_training == {
        **{k: v for k, v in training.items() if k not in ("store", "cache_dir")},
        "data": "data",
    }
