"""Feedback and the monitor over the capture folder, through the app."""

from __future__ import annotations

import base64
import time

import pytest

from models.capture.folder import CaptureFolder
from models.ids import new_id


@pytest.fixture
def captured(make_app, tmp_path, image_bytes):
    app = make_app(capture_dir=tmp_path / "cap", capture="sample:1")
    client = app.test_client()
    instances = [{"b64": base64.b64encode(image_bytes("PNG", seed=s)).decode()} for s in range(6)]
    body = client.post("/v1/models/tiny:predict", json={"instances": instances}).json
    app.extensions["ktl"].capture.drain()
    labels = app.extensions["ktl"].registry.get("tiny").bundle.labels
    top = [labels[max(range(len(row)), key=row.__getitem__)] for row in body["predictions"]]
    return client, body["ids"], top, labels


def test_feedback_is_scored_per_version_with_its_interval(captured):
    client, ids, top, labels = captured
    wrong = next(label for label in labels if label != top[1])
    sent = [{"id": ids[0], "label": top[0]}, {"id": ids[1], "label": wrong}]
    response = client.post("/v1/models/tiny/feedback", json=sent)
    assert response.status_code == 200, response.json
    assert response.json["accepted"] == 2
    assert [f["correct"] for f in response.json["feedback"]] == [True, False]
    one = client.post("/v1/models/tiny/feedback", json={"id": ids[2], "label": top[2]})
    assert one.status_code == 200 and one.json["accepted"] == 1
    monitor = client.get("/v1/models/tiny/monitor?window=600").json
    [version] = monitor["versions"]
    assert version["version"] == 1 and version["requests"] == 6
    assert version["feedback"]["count"] == 3 and version["feedback"]["correct"] == 2
    assert version["feedback"]["accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    low, high = version["feedback"]["interval"]
    assert 0 < low < 2 / 3 < high < 1
    assert sum(version["confidence_histogram"]["counts"]) == 6
    assert sum(version["class_mix"].values()) == pytest.approx(1, abs=1e-5)
    estimates = version["estimated_accuracy"]
    assert 0 < estimates["average_confidence"] <= 1
    assert estimates["average_thresholded_confidence"] is None  # the tiny bundle has none
    assert version["abstained"] == round(version["abstain_rate"] * 6)


@pytest.mark.parametrize(
    "body, status, code, words",
    [
        ({"id": "nonsense", "label": "x"}, 400, "bad_request", "id"),
        ({"label": "x"}, 400, "bad_request", "id"),
        ([], 400, "bad_request", ""),
    ],
)
def test_bad_feedback_bodies_are_400(captured, body, status, code, words):
    client = captured[0]
    response = client.post("/v1/models/tiny/feedback", json=body)
    assert response.status_code == status and response.json["code"] == code
    assert words in response.json["error"]


def test_an_unknown_id_is_404_and_nothing_is_stored(captured, tmp_path):
    client, ids, top, _ = captured
    unknown = new_id()
    sent = [{"id": ids[0], "label": top[0]}, {"id": unknown, "label": top[0]}]
    response = client.post("/v1/models/tiny/feedback", json=sent)
    assert response.status_code == 404 and response.json["code"] == "prediction_not_found"
    assert unknown in response.json["error"] and "[1]" in response.json["error"]
    assert not (tmp_path / "cap/tiny/feedback").exists()


def test_an_unknown_label_is_400_naming_the_labels(captured):
    client, ids, _, labels = captured
    response = client.post("/v1/models/tiny/feedback", json={"id": ids[0], "label": "zebra"})
    assert response.status_code == 400 and response.json["code"] == "unknown_label"
    assert "'zebra'" in response.json["error"] and labels[0] in response.json["error"]


def test_with_capture_off_both_routes_say_how_to_turn_it_on(client):
    for response in (
        client.get("/v1/models/tiny/monitor"),
        client.get("/v1/models/tiny/monitor/series"),
        client.post("/v1/models/tiny/feedback", json={"id": new_id(), "label": "a"}),
    ):
        assert response.status_code == 409 and "KTL_CAPTURE_DIR" in response.json["error"]


def test_unknown_model_and_bad_window(captured):
    client = captured[0]
    assert client.get("/v1/models/nosuch/monitor").status_code == 404
    assert client.get("/v1/models/tiny/monitor?window=5").status_code == 400
    assert client.get("/v1/models/nosuch/monitor/series").status_code == 404
    assert client.get("/v1/models/tiny/monitor/series?buckets=0").status_code == 400


def test_api_keys_guard_feedback_and_monitor(make_app, tmp_path):
    client = make_app(capture_dir=tmp_path / "cap", api_keys="k1").test_client()
    assert client.get("/v1/models/tiny/monitor").status_code == 401
    assert client.post("/v1/models/tiny/feedback", json={}).status_code == 401
    assert client.get("/v1/models/tiny/monitor/series").status_code == 401
    ok = client.get("/v1/models/tiny/monitor", headers={"Authorization": "Bearer k1"})
    assert ok.status_code == 200 and ok.json["versions"] == []


def test_the_openapi_document_has_both_routes(client):
    paths = client.get("/openapi.json").json["paths"]
    assert "post" in paths["/v1/models/{name}/feedback"]
    assert "get" in paths["/v1/models/{name}/monitor"]
    assert "get" in paths["/v1/models/{name}/monitor/series"]


def test_the_series_puts_each_prediction_and_feedback_in_its_bucket(captured, tmp_path):
    client, ids, top, _ = captured
    folder = CaptureFolder(tmp_path / "cap")
    earlier = int(time.time() * 1000) - 50 * 60 * 1000  # 50 minutes ago: the first of 4
    old = [new_id(earlier + i) for i in range(3)]
    lines = [{"id": i, "version": 1, "top": top[0], "label": None, "confidence": 0.4} for i in old]
    folder.append_log("tiny", "test-writer", lines)
    sent = [{"id": ids[0], "label": top[0]}, {"id": ids[1], "label": top[1]}]
    assert client.post("/v1/models/tiny/feedback", json=sent).status_code == 200
    body = client.get("/v1/models/tiny/monitor/series?window=3600&buckets=4").json
    assert body["window"] == 3600 and body["bucket_seconds"] == 900
    [version] = body["versions"]
    points = version["points"]
    assert [p["requests"] for p in points] == [3, 0, 0, 6]
    assert points[0]["abstain_rate"] == 1 and points[0]["average_confidence"] == pytest.approx(0.4)
    assert points[1]["abstain_rate"] is None and points[1]["average_confidence"] is None
    assert [p["feedback_count"] for p in points] == [0, 0, 0, 2]
    assert points[3]["feedback_accuracy"] == 1
    whole = client.get("/v1/models/tiny/monitor?window=3600").json["versions"][0]
    assert whole["requests"] == sum(p["requests"] for p in points)
    assert points[0]["start"] == body["since"] and points[-1]["end"] == body["until"]
