"""The Open Inference Protocol routes through the Flask test client: JSON and the
binary data extension built by hand (tests/e2e/test_kserve_e2e.py drives them
with tritonclient against gunicorn)."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from models.preprocessing import load_image
from tests.service.conftest import IMAGE_SIZE, LABELS, encode_image

INFER = "/v2/models/tiny/infer"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _expected(app, images: list[bytes]) -> np.ndarray:
    predictor = app.extensions["ktl"].registry.get("tiny")
    pixels = np.stack([load_image(data, IMAGE_SIZE) for data in images])
    return predictor.classifier.predict(pixels)


def _output(body: dict, name: str) -> dict:
    [output] = [o for o in body["outputs"] if o["name"] == name]
    return output


def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json == {"live": True}
    assert client.get("/v2/health/ready").json == {"ready": True}
    assert "binary_tensor_data" in client.get("/v2").json["extensions"]


def test_model_metadata_has_the_protocol_shape(client):
    body = client.get("/v2/models/tiny").json
    assert body["name"] == "tiny"
    assert body["versions"] == ["1"]
    assert body["platform"] == "tensorflow_keras"
    assert {(i["name"], i["datatype"]) for i in body["inputs"]} == {
        ("image_bytes", "BYTES"),
        ("pixels", "UINT8"),
    }
    [pixels] = [i for i in body["inputs"] if i["name"] == "pixels"]
    assert pixels["shape"] == [-1, *IMAGE_SIZE, 3]
    assert body["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(LABELS)]},
        {"name": "labels", "datatype": "BYTES", "shape": [-1]},
        {"name": "decision", "datatype": "BYTES", "shape": [-1]},
        {"name": "id", "datatype": "BYTES", "shape": [-1]},
    ]
    assert client.get("/v2/models/tiny/versions/1").json["name"] == "tiny"
    assert client.get("/v2/models/tiny/ready").json["ready"] is True
    assert client.get("/v2/models/tiny/versions/1/ready").json["ready"] is True


@pytest.mark.parametrize(
    "path",
    ["/v2/models/nope", "/v2/models/nope/ready", "/v2/models/tiny/versions/9/ready"],
)
def test_unknown_models_and_versions_are_404_with_an_error(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert isinstance(response.json["error"], str) and response.json["error"]


@pytest.mark.parametrize("element", ["plain", "object"])
def test_json_infer_with_base64_images(app, client, element):
    images = [encode_image(seed=1), encode_image("JPEG", (50, 70), seed=2)]
    data = [_b64(i) if element == "plain" else {"b64": _b64(i)} for i in images]
    response = client.post(
        INFER,
        json={
            "id": "req-7",
            "inputs": [{"name": "image_bytes", "shape": [2], "datatype": "BYTES", "data": data}],
        },
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["model_name"], body["model_version"], body["id"]) == ("tiny", "1", "req-7")
    probabilities = _output(body, "probabilities")
    assert probabilities["datatype"] == "FP32"
    assert probabilities["shape"] == [2, len(LABELS)]
    expected = _expected(app, images)
    np.testing.assert_allclose(
        np.reshape(probabilities["data"], (2, -1)), expected, rtol=0, atol=1e-6
    )
    labels = _output(body, "labels")
    assert labels["datatype"] == "BYTES" and labels["shape"] == [2]
    assert labels["data"] == [LABELS[i] for i in expected.argmax(axis=1)]
    # A version published without a threshold always answers: the decision is the label.
    assert _output(body, "decision")["data"] == labels["data"]


def test_json_infer_with_uint8_pixels_and_one_requested_output(app, client):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (2, *IMAGE_SIZE, 3), dtype=np.uint8)
    response = client.post(
        INFER,
        json={
            "inputs": [
                {
                    "name": "pixels",
                    "shape": list(pixels.shape),
                    "datatype": "UINT8",
                    "data": pixels.ravel().tolist(),
                }
            ],
            "outputs": [{"name": "labels"}],
        },
    )
    assert response.status_code == 200, response.json
    predictor = app.extensions["ktl"].registry.get("tiny")
    expected = predictor.classifier.predict(pixels).argmax(axis=1)
    assert [o["name"] for o in response.json["outputs"]] == ["labels"]
    assert response.json["outputs"][0]["data"] == [LABELS[i] for i in expected]


def _binary_request(header: dict, blobs: list[bytes]) -> tuple[bytes, dict]:
    text = json.dumps(header).encode()
    return text + b"".join(blobs), {"Inference-Header-Content-Length": str(len(text))}


def _bytes_blob(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def _read_binary_response(response) -> tuple[dict, dict[str, bytes]]:
    length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.data[:length])
    blobs, offset = {}, length
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        blobs[output["name"]] = response.data[offset : offset + size]
        offset += size
    assert offset == len(response.data)
    return header, blobs


def test_binary_data_extension_in_and_out(app, client):
    images = [encode_image(seed=4), encode_image(size=(64, 64), seed=5)]
    blob = _bytes_blob(images)
    body, headers = _binary_request(
        {
            "inputs": [
                {
                    "name": "image_bytes",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "outputs": [
                {"name": "probabilities", "parameters": {"binary_data": True}},
                {"name": "labels", "parameters": {"binary_data": True}},
            ],
        },
        [blob],
    )
    response = client.post(
        INFER, data=body, headers=headers, content_type="application/octet-stream"
    )
    assert response.status_code == 200, response.data[:300]
    header, blobs = _read_binary_response(response)
    expected = _expected(app, images)
    probabilities = np.frombuffer(blobs["probabilities"], "<f4").reshape(2, -1)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    labels, offset = [], 0
    while offset < len(blobs["labels"]):
        (size,) = struct.unpack_from("<I", blobs["labels"], offset)
        labels.append(blobs["labels"][offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    assert labels == [LABELS[i] for i in expected.argmax(axis=1)]


def test_binary_uint8_pixels_and_binary_data_output_default(app, client):
    pixels = np.random.default_rng(6).integers(0, 256, (1, *IMAGE_SIZE, 3), dtype=np.uint8)
    body, headers = _binary_request(
        {
            "parameters": {"binary_data_output": True},
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": list(pixels.shape),
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": pixels.nbytes},
                }
            ],
        },
        [pixels.tobytes()],
    )
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 200
    _, blobs = _read_binary_response(response)
    expected = app.extensions["ktl"].registry.get("tiny").classifier.predict(pixels)
    np.testing.assert_allclose(
        np.frombuffer(blobs["probabilities"], "<f4").reshape(1, -1), expected, atol=1e-6
    )


def _json_input(**overrides) -> dict:
    tensor = {
        "name": "image_bytes",
        "shape": [1],
        "datatype": "BYTES",
        "data": [_b64(encode_image())],
    }
    return {"inputs": [{**tensor, **overrides}]}


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"inputs": []}, "exactly one input"),
        (_json_input(datatype="FP32"), "datatype"),
        (_json_input(shape=[2]), "holds 1"),
        (_json_input(data=["not base64!"]), "not valid base64"),
        (_json_input(data=[_b64(b"not an image")]), "not an image"),
        (
            {**_json_input(), "outputs": [{"name": "logits"}]},
            "Unknown output",
        ),
        (
            {"inputs": [{"name": "pixels", "shape": [1, 8, 8, 3], "datatype": "UINT8"}]},
            "no 'data'",
        ),
        (
            {
                "inputs": [
                    {"name": "pixels", "shape": [1, 8, 8, 3], "datatype": "UINT8", "data": [0]}
                ]
            },
            "[n, 32, 32, 3]",
        ),
    ],
)
def test_bad_requests_are_400_in_the_protocol_error_shape(client, payload, needle):
    response = client.post(INFER, json=payload)
    assert response.status_code == 400
    assert needle in response.json["error"]


def test_bad_binary_framing_is_400(client):
    blob = _bytes_blob([encode_image()])
    header = {
        "inputs": [
            {
                "name": "image_bytes",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(blob) + 10},
            }
        ]
    }
    body, headers = _binary_request(header, [blob])
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 400
    assert "binary_data_size" in response.json["error"]
    response = client.post(INFER, data=b"{}", headers={"Inference-Header-Content-Length": "99"})
    assert response.status_code == 400


def test_infer_on_an_unknown_model_is_404(client):
    response = client.post("/v2/models/nope/infer", json=_json_input())
    assert response.status_code == 404
    assert "nope" in response.json["error"]


def test_api_keys_guard_models_and_infer_but_not_health(make_app):
    client = make_app(api_keys=("s3cret",)).test_client()
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/tiny").status_code == 401
    assert client.post(INFER, json=_json_input()).status_code == 401
    response = client.post(INFER, json=_json_input(), headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("payload", "code", "needle"),
    [
        (_json_input(shape=[2]), "shape_mismatch", "holds 1"),
        (
            {"inputs": [{"name": "p", "shape": [1, 8, 8, 3], "datatype": "UINT8", "data": [0]}]},
            "shape_mismatch",
            "[n, 32, 32, 3]",
        ),
        (_json_input(parameters={"binary_data_size": 5}), "invalid_binary_data", "5 but 0 bytes"),
        (_json_input(shape=[0]), "bad_request", "inputs[0].shape[0]"),
        (_json_input(shape=[True]), "bad_request", "whole number"),
        (_json_input(data=None), "bad_request", "inputs[0].data: null"),
        ({**_json_input(), "id": 7}, "bad_request", "id: "),
    ],
)  # fmt: skip
def test_refusals_carry_a_code_of_their_own_where_the_document_cannot_state_the_rule(
    client, payload, code, needle
):
    response = client.post(INFER, json=payload)
    assert response.status_code == 400
    assert response.json["code"] == code
    assert needle in response.json["error"]


def test_json_integers_may_be_written_with_a_point_zero_as_json_schema_allows(app, client):
    pixels = np.random.default_rng(8).integers(0, 256, (1, *IMAGE_SIZE, 3), dtype=np.uint8)
    tensor = {
        "name": "pixels",
        "shape": [1.0, *IMAGE_SIZE, 3],
        "datatype": "UINT8",
        "data": pixels.astype(float).tolist(),  # nested, and 17.0 for 17
    }
    response = client.post(INFER, json={"inputs": [tensor], "outputs": [{"name": "labels"}]})
    assert response.status_code == 200, response.json
    expected = app.extensions["ktl"].registry.get("tiny").classifier.predict(pixels).argmax(axis=1)
    assert response.json["outputs"][0]["data"] == [LABELS[i] for i in expected]
    tensor["data"] = [True] + [0] * (pixels.size - 1)
    refused = client.post(INFER, json={"inputs": [tensor]})
    assert refused.status_code == 400
    assert "element 0 (row-major) is True" in refused.json["error"]


def test_a_binary_body_that_is_not_a_json_request_is_invalid_binary_data(client):
    for body, headers in (
        (b"\x89PNG\r\n", {"Content-Type": "application/octet-stream"}),
        (b"0", {"Content-Type": "application/octet-stream"}),
        (b"{}", {"Inference-Header-Content-Length": "x"}),
    ):
        response = client.post(INFER, data=body, headers=headers)
        assert response.status_code == 400
        assert response.json["code"] == "invalid_binary_data", body
