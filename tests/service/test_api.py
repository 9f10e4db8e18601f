from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.bundle import load_bundle
from models.engines.inference import Classifier
from models.preprocessing import load_image

PREDICT = "/v1/models/tiny/predict"


def multipart(*files: tuple[bytes, str], field: str = "image") -> dict:
    return {
        "data": {field: [(io.BytesIO(data), name) for data, name in files]},
        "content_type": "multipart/form-data",
    }


def assert_error(response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    assert set(response.json) == {"error", "code"}
    assert response.json["code"] == code
    for word in words:
        assert word in response.json["error"]


# --- models ---------------------------------------------------------------


def test_models_lists_each_model_with_its_versions(client, labels):
    assert client.get("/v1/models").json == {
        "models": [
            {
                "name": "tiny",
                "versions": [1],
                "default_version": 1,
                "labels": labels,
                "backbone": "smallcnn",
                "image_size": [32, 32],
                "status": "available",
                "unavailable_versions": [],
                "version_details": [
                    {
                        "version": 1,
                        "created_at": "2024-01-01T00:00:00Z",
                        "accuracy": None,
                        "accuracy_split": None,
                        "threshold": None,
                        "engine": "keras",  # no INT8 artifact
                        "int8_agreement": None,
                    }
                ],
                "version_labels": {},
                "canary_weight": 0.0,
                "policy": "latest",
            }
        ]
    }


def test_a_corrupt_bundle_is_listed_unavailable_while_others_serve(
    make_app, store, publish, image_bytes
):
    publish(store, "broken")
    with open(store / "broken" / "1" / "model.keras", "r+b") as f:
        f.write(b"garbage")
    client = make_app(model_store=store).test_client()
    broken, tiny = client.get("/v1/models").json["models"]
    assert broken["name"] == "broken"
    assert (broken["status"], broken["default_version"], broken["versions"]) == (
        "unavailable",
        None,
        [],
    )
    [failure] = broken["unavailable_versions"]
    assert failure["version"] == 1
    assert "sha256" in failure["reason"]
    assert tiny["status"] == "available"

    response = client.post(
        "/v1/models/broken/predict", data=image_bytes(), content_type="image/png"
    )
    assert_error(response, 503, "model_unavailable", "sha256")
    response = client.post(PREDICT, data=image_bytes(), content_type="image/png")
    assert response.status_code == 200


def test_model_metadata_of_the_default_and_of_one_version(make_app, store, publish):
    publish(store, labels=["x", "y", "z"])
    client = make_app(model_store=store).test_client()
    default = client.get("/v1/models/tiny").json
    assert (default["name"], default["version"], default["labels"]) == ("tiny", 2, ["x", "y", "z"])
    assert "model.keras" in default["files"]
    first = client.get("/v1/models/tiny/versions/1").json
    assert (first["version"], first["labels"]) == (1, ["cat", "dog", "fox"])


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/nope",
        "/v1/models/tiny/versions/2",
        "/v1/models/tiny/versions/0",
        "/v1/models/tiny/versions/one",
        "/v1/models/tiny/versions/-1",
        "/v1/models/tiny/versions/" + "9" * 30,
        "/v1/models/..",
        "/v1/models/../versions/1",
        "/v1/models/%2e%2e/versions/1",
        "/v1/models/..%2Fetc",
        "/v1/models/Tiny",
        "/v1/models/tiny%00",
        "/v1/models/" + "a" * 65,
        "/v1/models/" + "a" * 5000,
    ],
)
def test_unknown_models_versions_and_invalid_names_are_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.is_json and set(response.json) == {"error", "code"}


# --- native predict ---------------------------------------------------------


def test_predict_one_multipart_file(client, image_bytes, labels, tiny_store):
    data = image_bytes("JPEG", seed=1)
    response = client.post(PREDICT, **multipart((data, "rose.jpg")))
    assert response.status_code == 200
    body = response.json
    assert (body["model"], body["version"]) == ("tiny", 1)
    [prediction] = body["predictions"]
    assert prediction["filename"] == "rose.jpg"
    assert list(prediction["probabilities"]) == labels
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    expected = Classifier(load_bundle(tiny_store / "tiny" / "1")).predict(
        load_image(data, (32, 32))[None]
    )[0]
    np.testing.assert_allclose(list(prediction["probabilities"].values()), expected, atol=1e-5)
    top = [entry["probability"] for entry in prediction["top"]]
    assert top == sorted(top, reverse=True) and len(top) == 3


def test_several_files_are_one_batch_in_upload_order(client, image_bytes):
    files = [
        (image_bytes("PNG", seed=1), "a.png"),
        (image_bytes("GIF", seed=2), "b.gif"),
        (image_bytes("WEBP", seed=3), "c.webp"),
        (image_bytes("BMP", seed=4), "d.bmp"),
        (image_bytes("TIFF", seed=5, mode="CMYK"), "e.tiff"),
        (image_bytes("PNG", seed=6, mode="LA"), "f.png"),
    ]
    batch = client.post(PREDICT, **multipart(*files)).json["predictions"]
    assert [p["filename"] for p in batch] == [name for _, name in files]
    for (data, _), prediction in zip(files, batch, strict=True):
        alone = client.post(PREDICT, data=data, content_type="image/anything").json
        assert alone["predictions"][0]["probabilities"] == pytest.approx(
            prediction["probabilities"], abs=1e-5
        )


def test_a_raw_image_body(client, image_bytes):
    response = client.post(PREDICT, data=image_bytes("JPEG"), content_type="image/jpeg")
    assert response.status_code == 200
    assert response.json["predictions"][0]["filename"] is None


def test_a_version_can_be_asked_for(make_app, store, publish, image_bytes):
    publish(store)
    client = make_app(model_store=store).test_client()
    png = {"data": image_bytes(), "content_type": "image/png"}
    assert client.post(PREDICT, **png).json["version"] == 2
    assert client.post("/v1/models/tiny/versions/1/predict", **png).json["version"] == 1
    response = client.post("/v1/models/tiny/versions/9/predict", **png)
    assert_error(response, 404, "model_not_found", "no version 9")


@pytest.mark.parametrize(
    ("query", "count"), [("", 3), ("?top_k=1", 1), ("?top_k=2", 2), ("?top_k=99", 3)]
)
def test_top_k_is_clipped_to_the_labels(client, image_bytes, query, count):
    response = client.post(PREDICT + query, data=image_bytes(), content_type="image/png")
    assert len(response.json["predictions"][0]["top"]) == count


def test_top_k_defaults_to_the_configured_value(make_app, image_bytes):
    client = make_app(top_k=2).test_client()
    response = client.post(PREDICT, data=image_bytes(), content_type="image/png")
    assert len(response.json["predictions"][0]["top"]) == 2


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "", "9" * 5000])
def test_a_bad_top_k_is_400(client, image_bytes, value):
    response = client.post(f"{PREDICT}?top_k={value}", data=image_bytes(), content_type="image/png")
    assert_error(response, 400, "bad_request", "top_k")


# --- bad input never yields a 5xx ------------------------------------------------


def test_not_an_image_is_400_and_names_the_file(client):
    response = client.post(PREDICT, **multipart((b"hello, world", "notes.txt")))
    assert_error(response, 400, "invalid_image", "notes.txt", "not an image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_image_is_400(client, image_bytes, fmt):
    data = image_bytes(fmt, size=(64, 64))
    response = client.post(PREDICT, data=data[: len(data) // 2], content_type="image/png")
    assert_error(response, 400, "invalid_image")


def test_an_empty_file_is_400(client):
    response = client.post(PREDICT, **multipart((b"", "empty.png")))
    assert_error(response, 400, "invalid_image", "empty")


def test_a_missing_image_field_is_400_and_says_what_to_send(client, image_bytes):
    response = client.post(PREDICT, **multipart((image_bytes(), "a.png"), field="file"))
    assert_error(response, 400, "bad_request", "'image'", "['file']")
    response = client.post(PREDICT, data={"image": "a.png"}, content_type="multipart/form-data")
    assert_error(response, 400, "bad_request", "holds text, not a file")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/json",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        None,
    ],
)
def test_a_content_type_that_is_not_an_image_or_multipart_is_415(client, image_bytes, content_type):
    response = client.post(PREDICT, data=image_bytes(), content_type=content_type)
    assert_error(response, 415, "unsupported_media_type", "multipart/form-data")


def test_a_body_over_the_upload_limit_is_413(make_app, image_bytes):
    client = make_app(max_upload_mb=0.01).test_client()  # about 10 KB
    big = image_bytes(size=(200, 200))
    assert len(big) > 0.01 * 2**20
    assert_error(
        client.post(PREDICT, data=big, content_type="image/png"),
        413,
        "payload_too_large",
        "KTL_MAX_UPLOAD_MB",
    )
    response = client.post(PREDICT, **multipart((big, "big.png")))
    assert_error(response, 413, "payload_too_large")


def test_an_image_over_the_pixel_limit_is_413(make_app, image_bytes):
    client = make_app(max_image_pixels=1000).test_client()
    # 2,500 pixels: over twice the limit, where Pillow refuses it first with its own number
    response = client.post(PREDICT, **multipart((image_bytes(size=(50, 50)), "bomb.png")))
    assert_error(response, 413, "image_too_large", "bomb.png", "KTL_MAX_IMAGE_PIXELS")
    assert "over the limit of 1,000 pixels" in response.json["error"]
    assert "2000" not in response.json["error"], response.json
    ok = client.post(PREDICT, data=image_bytes(size=(30, 30)), content_type="image/png")
    assert ok.status_code == 200


def test_too_many_images_in_one_request_is_413(make_app, image_bytes):
    client = make_app(max_images_per_request=2).test_client()
    files = [(image_bytes(seed=i), f"{i}.png") for i in range(3)]
    response = client.post(PREDICT, **multipart(*files))
    assert_error(response, 413, "payload_too_large", "KTL_MAX_IMAGES_PER_REQUEST")


def test_unknown_and_invalid_models_are_404_on_predict(client, image_bytes):
    for name in ("nope", "..", "UPPER", "a" * 300):
        response = client.post(
            f"/v1/models/{name}/predict", data=image_bytes(), content_type="image/png"
        )
        assert_error(response, 404, "model_not_found")


def test_a_saturated_model_answers_503_with_retry_after(make_app, image_bytes):
    app = make_app(queue_size=1, max_batch_size=1, max_batch_delay_ms=0)
    predictor = app.extensions["ktl"].registry.get("tiny")
    batcher = predictor._batcher
    gate, started = threading.Event(), threading.Event()
    forward = batcher._forward

    def slow_forward(pixels):
        started.set()
        assert gate.wait(10)
        return forward(pixels)

    batcher._forward = slow_forward
    png = {"data": image_bytes(), "content_type": "image/png"}
    statuses = []

    def post():
        statuses.append(app.test_client().post(PREDICT, **png).status_code)

    threads = [threading.Thread(target=post) for _ in range(2)]
    threads[0].start()
    assert started.wait(10)
    threads[1].start()
    deadline = time.monotonic() + 10
    while len(batcher._waiting) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    response = app.test_client().post(PREDICT, **png)
    assert_error(response, 503, "overloaded", "busy")
    assert response.headers["Retry-After"] == "1"
    gate.set()
    for thread in threads:
        thread.join(10)
    assert statuses == [200, 200]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=300), mimetype=st.sampled_from(["image/png", "image/jpeg", "image/gif"])
)
def test_arbitrary_bytes_never_cause_a_server_error(client, body, mimetype):
    response = client.post(PREDICT, data=body, content_type=mimetype)
    assert response.status_code in (200, 400)
    assert response.is_json


def test_model_metadata_is_exactly_the_bundles_metadata_json(client, tiny_store):
    written = json.loads((tiny_store / "tiny" / "1" / "metadata.json").read_text())
    assert client.get("/v1/models/tiny").json == written
    assert client.get("/v1/models/tiny/versions/1").json == written
