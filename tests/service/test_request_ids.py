"""Prediction ids in every protocol's answer, and X-Request-Id on every response."""

from __future__ import annotations

import base64
import io

import pytest

from models.ids import is_id


def test_native_predictions_each_have_a_distinct_id(client, image_bytes):
    files = {"image": [(io.BytesIO(image_bytes("PNG", seed=s)), f"{s}.png") for s in range(3)]}
    response = client.post(
        "/v1/models/tiny/predict", data=files, content_type="multipart/form-data"
    )
    ids = [p["id"] for p in response.json["predictions"]]
    assert len(set(ids)) == 3 and all(is_id(i) for i in ids)


def test_tf_serving_answers_one_id_per_instance(client, image_bytes):
    instances = [{"b64": base64.b64encode(image_bytes("PNG", seed=s)).decode()} for s in range(2)]
    body = client.post("/v1/models/tiny:predict", json={"instances": instances}).json
    assert len(body["ids"]) == 2 and len(set(body["ids"])) == 2
    assert all(is_id(i) for i in body["ids"])


def test_open_inference_protocol_answers_an_id_output(client, image_bytes):
    data = [base64.b64encode(image_bytes("PNG", seed=s)).decode() for s in range(2)]
    tensor = {"name": "image_bytes", "datatype": "BYTES", "shape": [2], "data": data}
    body = client.post("/v2/models/tiny/infer", json={"inputs": [tensor]}).json
    [ids] = [o for o in body["outputs"] if o["name"] == "id"]
    assert ids["datatype"] == "BYTES" and ids["shape"] == [2]
    assert len(set(ids["data"])) == 2 and all(is_id(i) for i in ids["data"])


def test_a_valid_client_request_id_is_echoed(client):
    response = client.get("/v1/models", headers={"X-Request-Id": "trace-42.a:b"})
    assert response.headers["X-Request-Id"] == "trace-42.a:b"


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129, "<script>"])
def test_otherwise_the_response_gets_a_new_id(client, sent):
    headers = {} if sent is None else {"X-Request-Id": sent}
    first = client.get("/healthz", headers=headers).headers["X-Request-Id"]
    second = client.get("/healthz", headers=headers).headers["X-Request-Id"]
    assert is_id(first) and is_id(second) and first != second


def test_errors_carry_the_request_id_too(client):
    response = client.get("/v1/models/nosuch", headers={"X-Request-Id": "abc"})
    assert response.status_code == 404 and response.headers["X-Request-Id"] == "abc"


def test_the_openapi_document_names_the_header_and_the_ids(client):
    document = client.get("/openapi.json").json
    predict = document["paths"]["/v1/models/{name}/predict"]["post"]
    assert any(p["name"] == "X-Request-Id" and p["in"] == "header" for p in predict["parameters"])
    assert "X-Request-Id" in predict["responses"]["200"]["headers"]
    schemas = document["components"]["schemas"]
    assert "id" in schemas["Prediction"]["required"]
    assert "ids" in schemas["TFServingResponse"]["required"]
