from __future__ import annotations

import base64
import json

import pytest

PREDICT = "/v1/models/tiny:predict"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert isinstance(response.json["error"], str)  # TensorFlow Serving's error shape
    for word in words:
        assert word in response.json["error"]


def test_both_instance_forms_return_probabilities_in_label_order(client, image_bytes, labels):
    first, second = image_bytes("JPEG", seed=1), image_bytes("PNG", seed=2)
    response = client.post(
        PREDICT, json={"instances": [{"b64": b64(first)}, {"image_bytes": {"b64": b64(second)}}]}
    )
    assert response.status_code == 200
    rows = response.json["predictions"]
    assert len(rows) == 2 and all(len(row) == len(labels) for row in rows)
    for data, row in zip((first, second), rows, strict=True):
        native = client.post("/v1/models/tiny/predict", data=data, content_type="image/png").json
        assert row == pytest.approx(
            list(native["predictions"][0]["probabilities"].values()), abs=1e-5
        )
        assert sum(row) == pytest.approx(1.0, abs=1e-5)


def test_the_versioned_form_and_line_wrapped_base64(make_app, store, publish, image_bytes):
    publish(store)
    client = make_app(model_store=store).test_client()
    encoded = base64.encodebytes(image_bytes()).decode()  # MIME style, newline every 76 chars
    assert "\n" in encoded
    response = client.post(
        "/v1/models/tiny/versions/1:predict", json={"instances": [{"b64": encoded}]}
    )
    assert response.status_code == 200
    response = client.post(
        "/v1/models/tiny/versions/3:predict", json={"instances": [{"b64": encoded}]}
    )
    assert_error(response, 404, "no version 3")


def test_a_body_without_a_json_content_type_is_read_as_json_like_tf_serving(client, image_bytes):
    body = json.dumps({"instances": [{"b64": b64(image_bytes())}]})
    for content_type in (None, "application/x-www-form-urlencoded"):
        assert client.post(PREDICT, data=body, content_type=content_type).status_code == 200


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("{not json", ["not valid JSON"]),
        ("[" * 100_000, ["not valid JSON"]),
        ("\xff\xfe", ["not valid JSON"]),
        ("[]", ["instances"]),
        ("{}", ["instances"]),
        ('{"instances": []}', ["instances"]),
        ('{"instances": "abc"}', ["instances"]),
        ('{"instances": [1]}', ["instances[0]", "b64"]),
        ('{"instances": [{"b64": 5}]}', ["instances[0]"]),
        ('{"instances": [{"image_bytes": "abc"}]}', ["instances[0]"]),
        ('{"instances": [{"b64": "***"}]}', ["instances[0]", "base64"]),
        ('{"instances": [{"b64": "é"}]}', ["instances[0]", "base64"]),
        ('{"instances": [{"b64": "aGVsbG8="}]}', ["instances[0]", "not an image"]),
    ],
)
def test_bad_bodies_are_400(client, body, words):
    response = client.post(
        PREDICT, data=body.encode("utf-8", "surrogateescape"), content_type="application/json"
    )
    assert_error(response, 400, *words)


def test_an_image_content_type_is_415(client, image_bytes):
    response = client.post(PREDICT, data=image_bytes(), content_type="image/png")
    assert_error(response, 415, "application/json")


def test_unknown_models_are_404(client, image_bytes):
    response = client.post(
        "/v1/models/nope:predict", json={"instances": [{"b64": b64(image_bytes())}]}
    )
    assert_error(response, 404, "nope")


def test_get_is_405(client):
    response = client.get(PREDICT)
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]
