"""Every form of prediction says when the model is not sure: the native body's
decision (with ?min_confidence), TF Serving's decisions, the Open Inference
Protocol's decision output; by the version's threshold when it has one."""

from __future__ import annotations

import base64

import pytest

from models.bundle import save_bundle
from models.store import ModelStore
from tests.service.conftest import tiny_metadata

PNG_SEED = 7


@pytest.fixture
def sure_client(make_app, tmp_path, tiny_model):
    """``sure`` version 1: the tiny model, published with a threshold no answer of its
    reaches (an untrained 3-class model is about a third sure of anything)."""
    metadata = tiny_metadata("sure").replace(decision={"threshold": 0.9, "rule": "fixed"})
    save_bundle(ModelStore(tmp_path / "store"), tiny_model, metadata)
    return make_app(model_store=tmp_path / "store").test_client()


def test_the_versions_threshold_decides_and_a_request_may_override_it(sure_client, image_bytes):
    image = image_bytes(seed=PNG_SEED)
    body = sure_client.post("/v1/models/sure/predict", data=image, content_type="image/png").json
    (prediction,) = body["predictions"]
    assert prediction["decision"] == {
        "label": None, "confidence": prediction["top"][0]["probability"], "threshold": 0.9
    }  # fmt: skip
    answered = sure_client.post(
        "/v1/models/sure/predict?min_confidence=0", data=image, content_type="image/png"
    ).json["predictions"][0]["decision"]
    assert answered["label"] == prediction["top"][0]["label"] and answered["threshold"] == 0


def test_a_bad_min_confidence_is_a_400(sure_client, image_bytes):
    response = sure_client.post(
        "/v1/models/sure/predict?min_confidence=2", data=image_bytes(), content_type="image/png"
    )
    assert response.status_code == 400 and "min_confidence" in response.json["error"]


def test_tf_serving_answers_null_where_not_sure(sure_client, image_bytes):
    b64 = base64.b64encode(image_bytes(seed=PNG_SEED)).decode()
    body = sure_client.post("/v1/models/sure:predict", json={"instances": [{"b64": b64}]}).json
    assert len(body["predictions"][0]) == 3 and body["decisions"] == [None]


def test_the_open_inference_protocol_answers_an_empty_decision_where_not_sure(
    sure_client, image_bytes
):
    b64 = base64.b64encode(image_bytes(seed=PNG_SEED)).decode()
    tensor = {"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [b64]}
    body = sure_client.post("/v2/models/sure/infer", json={"inputs": [tensor]}).json
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["decision"]["data"] == [""] and outputs["labels"]["data"][0]
