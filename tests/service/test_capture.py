"""Capture through the app: every prediction logged, rules keep images, the cap and
faults never reach a prediction."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest

from models.capture.folder import CaptureFolder
from models.capture.records import find_prediction


def _predict(client, image_bytes, seeds):
    instances = [{"b64": base64.b64encode(image_bytes("PNG", seed=s)).decode()} for s in seeds]
    response = client.post("/v1/models/tiny:predict", json={"instances": instances})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["ids"]


def _metric(client, name: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    values = re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return sum(float(v) for v in values)


def test_every_prediction_is_logged_and_sample_keeps_images(make_app, tmp_path, image_bytes):
    app = make_app(capture_dir=tmp_path / "cap", capture="sample:1")
    client = app.test_client()
    ids = _predict(client, image_bytes, [1, 2])
    native = client.post(
        "/v1/models/tiny/predict", data=image_bytes("JPEG", seed=3), content_type="image/jpeg"
    ).json
    ids.append(native["predictions"][0]["id"])
    app.extensions["ktl"].capture.drain()
    folder = CaptureFolder(tmp_path / "cap")
    for identifier in ids:
        line = find_prediction(folder, "tiny", identifier)
        assert line is not None and line["captured"] is True
        assert line["model"] == "tiny" and line["version"] == 1 and line["engine"]
        record = json.loads((tmp_path / "cap/tiny/images" / f"{identifier}.json").read_text())
        assert set(record["probabilities"]) == set(
            app.extensions["ktl"].registry.get("tiny").bundle.labels
        )
        assert (tmp_path / "cap/tiny/images" / record["image"]).is_file()
    assert (tmp_path / "cap/tiny/images" / f"{ids[2]}.jpg").is_file()
    assert _metric(client, "ktl_capture_images_total") == 3


def test_without_a_rule_that_matches_only_the_log_is_written(make_app, tmp_path, image_bytes):
    app = make_app(capture_dir=tmp_path / "cap", capture="below:0.0001")
    client = app.test_client()
    [identifier] = _predict(client, image_bytes, [1])
    app.extensions["ktl"].capture.drain()
    assert find_prediction(CaptureFolder(tmp_path / "cap"), "tiny", identifier)["captured"] is False
    assert not (tmp_path / "cap/tiny/images").exists()


def test_the_per_minute_cap_bounds_images(make_app, tmp_path, image_bytes):
    app = make_app(capture_dir=tmp_path / "cap", capture="sample:1", capture_max_per_minute=2)
    client = app.test_client()
    ids = _predict(client, image_bytes, range(5))
    app.extensions["ktl"].capture.drain()
    images = list((tmp_path / "cap/tiny/images").glob("*.json"))
    # The ids of one request share a minute, unless the request straddled one.
    assert 2 <= len(images) <= 4 and len(ids) == 5
    assert _metric(client, "ktl_capture_skipped_total") == 5 - len(images)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_an_unwritable_folder_never_fails_a_prediction(make_app, tmp_path, image_bytes):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o500)
    _unwritable_case(make_app, folder, image_bytes)


def test_a_folder_that_is_a_file_never_fails_a_prediction(make_app, tmp_path, image_bytes):
    # Works as root too: nothing can be created under a regular file.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    _unwritable_case(make_app, blocked, image_bytes)


def _unwritable_case(make_app, folder, image_bytes):
    app = make_app(capture_dir=folder, capture="sample:1")
    client = app.test_client()
    for seed in range(3):
        _predict(client, image_bytes, [seed])
    app.extensions["ktl"].capture.drain()
    assert _metric(client, "ktl_capture_failures_total") >= 3
    assert _metric(client, "ktl_capture_images_total") == 0


def test_a_full_queue_drops_captures_and_answers(make_app, tmp_path, image_bytes, monkeypatch):
    from service.monitoring import capture

    app = make_app(capture_dir=tmp_path / "cap", capture="sample:1")
    capturer = app.extensions["ktl"].capture
    monkeypatch.setattr(capturer, "_start", lambda: None)  # no writer: the queue fills
    monkeypatch.setattr(capturer, "_queue", capture.queue.Queue(1))
    client = app.test_client()
    _predict(client, image_bytes, [1, 2, 3])
    assert _metric(client, "ktl_capture_skipped_total") == 2


def test_predictions_are_counted_without_capture(client, image_bytes):
    before = _metric(client, "ktl_prediction_confidence_count")
    _predict(client, image_bytes, [1, 2])
    assert _metric(client, "ktl_prediction_confidence_count") == before + 2


def test_the_log_names_the_request_id(make_app, tmp_path, image_bytes):
    app = make_app(capture_dir=tmp_path / "cap", capture="")
    client = app.test_client()
    body = {"instances": [{"b64": base64.b64encode(image_bytes("PNG", seed=1)).decode()}]}
    response = client.post("/v1/models/tiny:predict", json=body, headers={"X-Request-Id": "r-9"})
    app.extensions["ktl"].capture.drain()
    line = find_prediction(CaptureFolder(tmp_path / "cap"), "tiny", response.json["ids"][0])
    assert line["request_id"] == "r-9" and line["captured"] is False


def test_a_fault_while_observing_never_fails_a_prediction(
    make_app, tmp_path, image_bytes, monkeypatch
):
    from service.monitoring import capture

    app = make_app(capture_dir=tmp_path / "cap")
    client = app.test_client()

    def broken(*args):
        raise RuntimeError("a bug in capture")

    monkeypatch.setattr(capture, "decide", broken)
    _predict(client, image_bytes, [1])
    assert _metric(client, "ktl_capture_failures_total") == 1
