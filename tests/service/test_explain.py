from __future__ import annotations

import io
import threading
import time

from PIL import Image

from tests.service.conftest import IMAGE_SIZE, LABELS


def png(response) -> Image.Image:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "image/png"
    return Image.open(io.BytesIO(response.data))


def test_explain_returns_a_heatmap_over_the_image(client, image_bytes):
    image = png(
        client.post("/v1/models/tiny/explain", data=image_bytes(), content_type="image/png")
    )
    assert image.size[0] >= 224 and image.size[0] == image.size[1]  # 32x32 scaled up


def test_explain_as_json_names_the_class(client, image_bytes):
    response = client.post(
        "/v1/models/tiny/versions/1/explain?format=json&class=dog",
        data={"image": (io.BytesIO(image_bytes()), "a.png")},
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert body["model"] == "tiny" and body["version"] == 1
    assert body["class"] == {"label": "dog", "index": LABELS.index("dog")}
    heatmap = body["heatmap"]
    assert len(heatmap) == IMAGE_SIZE[0] // 4 and len(heatmap[0]) == IMAGE_SIZE[1] // 4
    assert all(0 <= v <= 1 for row in heatmap for v in row)
    by_index = client.post(
        "/v1/models/tiny/explain?format=json&class=1", data=image_bytes(), content_type="image/png"
    )
    assert by_index.json["heatmap"] == heatmap


def test_explain_errors_are_json(client, image_bytes):
    cases = [
        ("/v1/models/tiny/explain?class=wolf", 400, "cat, dog, fox"),
        ("/v1/models/tiny/explain?format=gif", 400, "png or json"),
        ("/v1/models/nope/explain", 404, "nope"),
    ]
    for url, status, text in cases:
        response = client.post(url, data=image_bytes(), content_type="image/png")
        assert response.status_code == status, url
        assert text in response.json["error"]
    two = client.post(
        "/v1/models/tiny/explain",
        data={
            "image": [(io.BytesIO(image_bytes()), "a.png"), (io.BytesIO(image_bytes()), "b.png")]
        },
    )
    assert two.status_code == 400 and "exactly one image" in two.json["error"]
    bad = client.post("/v1/models/tiny/explain", data=b"not an image", content_type="image/png")
    assert bad.status_code == 400 and bad.json["code"] == "invalid_image"


def test_activations_grid_and_unknown_layers(client, image_bytes):
    grid = png(
        client.post(
            "/v1/models/tiny/activations?layer=block1_conv1_relu",
            data=image_bytes(),
            content_type="image/png",
        )
    )
    assert grid.size[0] > 32
    response = client.post(
        "/v1/models/tiny/activations?layer=nope", data=image_bytes(), content_type="image/png"
    )
    assert response.status_code == 400
    assert "block1_conv1" in response.json["error"] and "block3_pool" in response.json["error"]
    missing = client.post(
        "/v1/models/tiny/activations", data=image_bytes(), content_type="image/png"
    )
    assert missing.status_code == 400 and "'layer' is required" in missing.json["error"]


def test_explain_needs_the_api_key_like_predict(make_app, image_bytes):
    client = make_app(api_keys=("secret",)).test_client()
    for route in ("/v1/models/tiny/explain", "/v1/models/tiny/activations?layer=block1_conv1"):
        response = client.post(route, data=image_bytes(), content_type="image/png")
        assert response.status_code == 401
    ok = client.post(
        "/v1/models/tiny/explain",
        data=image_bytes(),
        content_type="image/png",
        headers={"Authorization": "Bearer secret"},
    )
    assert ok.status_code == 200


def test_explain_and_activations_wait_in_the_models_queue_and_a_full_queue_is_503(
    make_app, image_bytes
):
    app = make_app(queue_size=1, max_batch_size=1, max_batch_delay_ms=0)
    batcher = app.extensions["ktl"].registry.get("tiny")._batcher
    gate, started = threading.Event(), threading.Event()
    forward = batcher._forward

    def slow_forward(pixels):
        started.set()
        assert gate.wait(10)
        return forward(pixels)

    batcher._forward = slow_forward
    png = {"data": image_bytes(), "content_type": "image/png"}
    statuses: dict[str, int] = {}

    def post(route: str) -> None:
        statuses[route] = app.test_client().post(route, **png).status_code

    busy = threading.Thread(target=post, args=("/v1/models/tiny/predict",))
    busy.start()
    assert started.wait(10)  # the model is running a forward pass
    queued = threading.Thread(target=post, args=("/v1/models/tiny/explain",))
    queued.start()
    deadline = time.monotonic() + 10
    while len(batcher._waiting) < 1:  # the explanation waits its turn
        assert time.monotonic() < deadline
        time.sleep(0.001)
    # (with a class given, explain needs no prediction: only the queue can refuse it)
    for route in (
        "/v1/models/tiny/explain?class=dog",
        "/v1/models/tiny/activations?layer=block1_pool",
    ):
        response = app.test_client().post(route, **png)
        assert response.status_code == 503, route
        assert response.json["code"] == "overloaded" and response.headers["Retry-After"] == "1"
    gate.set()
    for thread in (busy, queued):
        thread.join(10)
    assert statuses == {"/v1/models/tiny/predict": 200, "/v1/models/tiny/explain": 200}
