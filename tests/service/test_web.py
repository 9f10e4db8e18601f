"""The web pages: open shells with their own content policy; the report files they
show come from the API, behind the key like any route that reads a model."""

from __future__ import annotations

import pytest

from models.bundle import save_bundle
from models.store import ModelStore
from service.pages.web import PAGE_POLICY
from tests.service.conftest import tiny_metadata


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [
        ("/", "text/html"),
        ("/models/tiny/versions/1/report", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
        ("/train", "text/html"),
        ("/static/train.js", "text/javascript"),
        ("/review", "text/html"),
        ("/static/review.js", "text/javascript"),
    ],
)
def test_pages_and_their_files_are_served_with_the_page_policy(client, path, mimetype):
    with client.get(path) as response:
        assert response.status_code == 200
        assert response.mimetype == mimetype
        assert response.headers["Content-Security-Policy"] == PAGE_POLICY


@pytest.mark.parametrize(
    "path",
    ["/static/nothing.js", "/static/../app.py", "/models/tiny/versions/one/report",
     "/models/UPPER/versions/1/report"],
)  # fmt: skip
def test_what_is_not_there_is_a_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert set(response.json) == {"error", "code"}


def test_report_files_are_those_the_metadata_lists_behind_the_key(
    make_app, tmp_path, tiny_model, image_bytes
):
    reports = {"metrics.json": b'{"accuracy": 1.0}', "curves.png": image_bytes()}
    save_bundle(ModelStore(tmp_path / "store"), tiny_model, tiny_metadata(), reports)
    client = make_app(model_store=tmp_path / "store", api_keys=("k",)).test_client()
    key = {"Authorization": "Bearer k"}
    for name, mimetype in (("metrics.json", "application/json"), ("curves.png", "image/png")):
        path = f"/v1/models/tiny/versions/1/reports/{name}"
        assert client.get(path).status_code == 401
        response = client.get(path, headers=key)
        assert (response.status_code, response.mimetype) == (200, mimetype)
        assert response.data == reports[name]
    missing = client.get("/v1/models/tiny/versions/1/reports/nothing.json", headers=key)
    assert missing.status_code == 404 and "no report file" in missing.json["error"]
    outside = client.get("/v1/models/tiny/versions/1/reports/../metadata.json", headers=key)
    assert outside.status_code == 404


def test_training_images_need_a_report_key_when_report_keys_are_set(
    make_app, tmp_path, tiny_model, image_bytes
):
    reports = {"metrics.json": b"{}", "worst/01.png": image_bytes()}
    save_bundle(ModelStore(tmp_path / "store"), tiny_model, tiny_metadata(), reports)
    base = "/v1/models/tiny/versions/1/reports"
    image, figures = f"{base}/worst/01.png", f"{base}/metrics.json"
    predict, report = {"Authorization": "Bearer p"}, {"Authorization": "Bearer r"}

    separate = make_app(model_store=tmp_path / "store", api_keys=("p",), report_keys=("r",))
    client = separate.test_client()
    assert client.get(image, headers=predict).status_code == 401
    response = client.get(image, headers=report)
    assert (response.status_code, response.mimetype) == (200, "image/png")
    assert response.data == reports["worst/01.png"]
    assert client.get(figures, headers=predict).status_code == 200
    assert client.get(f"{base}/worst/02.png", headers=report).status_code == 404

    # Without KTL_REPORT_KEYS the predict keys see them, like every report file.
    same = make_app(model_store=tmp_path / "store", api_keys=("p",)).test_client()
    assert same.get(image).status_code == 401
    assert same.get(image, headers=predict).status_code == 200


def test_the_backbones_say_which_train_offline(client, monkeypatch, tmp_path):
    """The train page marks the backbones whose weights are at hand (GET /v1/backbones)."""
    from models.networks import classifier, lite
    from models.networks.backbones import list_backbones

    cached = tmp_path / "resnet50_notop.h5"
    monkeypatch.setattr(
        classifier,
        "keras_cache_path",
        lambda spec: cached if spec.name == "resnet50" else tmp_path / "absent.h5",
    )
    monkeypatch.setattr(lite, "is_installed", lambda variant: variant.name == "efficientnet_lite0")
    listed = {b["name"]: b for b in client.get("/v1/backbones").json["backbones"]}
    assert list(listed) == [spec.name for spec in list_backbones()]
    assert listed["efficientnet_lite0"]["offline"] and not listed["efficientnet_lite1"]["offline"]
    assert listed["smallcnn"] == {
        "name": "smallcnn", "default_size": 32, "imagenet": False, "offline": True,
    }  # fmt: skip
    assert not listed["resnet50"]["offline"] and listed["resnet50"]["imagenet"]
    cached.write_bytes(b"weights")  # once Keras' cache holds the file, no download is needed
    again = {b["name"]: b for b in client.get("/v1/backbones").json["backbones"]}
    assert again["resnet50"]["offline"]
