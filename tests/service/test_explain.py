from __future__ import annotations

import io

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
