"""The review routes over the capture folder, through the app: the queue with image
URLs (never a server path), the captured image, a label recorded for an item's
look-alikes too, and the refusals: keys, capture off, unknown ids and labels."""

from __future__ import annotations

import numpy as np
import pytest

from models.capture.folder import CaptureFolder
from models.capture.review import reviews
from models.ids import new_id
from tests.service.conftest import LABELS
from tests.support.captures import write_captures
from tests.support.patterns import scene

KEY = {"Authorization": "Bearer trainer"}


@pytest.fixture
def captures(tmp_path):
    """Three captures of ``tiny``: an abstained one, an unsure one, and a resized copy
    of the unsure picture (its look-alike)."""
    rng = np.random.default_rng(3)
    pictures = [scene(96, rng) for _ in range(2)]
    folder = CaptureFolder(tmp_path / "cap")

    plan = {
        "abstained": (pictures[0], 0.4, True),
        "unsure": (pictures[1], 0.6, False),
        "resized": (pictures[1].resize((80, 80)), 0.7, False),
    }
    return folder, write_captures(folder, "tiny", plan, labels=LABELS, top="dog")


@pytest.fixture
def client(make_app, captures):
    folder, _ = captures
    return make_app(capture_dir=folder.root, train_keys=("trainer",)).test_client()


def test_the_queue_ranks_items_with_image_urls_and_counts(client, captures, tmp_path):
    _, ids = captures
    response = client.get("/v1/models/tiny/review", headers=KEY)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["left"] == 2 and body["reviewed"] == 0
    first, second = body["items"]
    assert first["id"] == ids["abstained"] and first["abstained"] is True
    assert second["id"] == ids["unsure"] and second["near_duplicates"] == [ids["resized"]]
    assert second["labels"] == LABELS and second["predicted"] == "dog"
    assert second["confidence"] == pytest.approx(0.6, abs=1e-9)
    assert first["image"] == f"/v1/models/tiny/review/{ids['abstained']}/image"
    assert str(tmp_path) not in response.get_data(as_text=True)
    assert len(client.get("/v1/models/tiny/review?limit=1", headers=KEY).json["items"]) == 1


def test_the_image_is_the_captured_bytes_with_its_type(client, captures):
    folder, ids = captures
    response = client.get(f"/v1/models/tiny/review/{ids['unsure']}/image", headers=KEY)
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.data == (folder.model_dir("tiny") / f"images/{ids['unsure']}.png").read_bytes()
    missing = client.get(f"/v1/models/tiny/review/{new_id()}/image", headers=KEY)
    assert missing.status_code == 404 and missing.json["code"] == "prediction_not_captured"
    other = client.get(f"/v1/models/nosuch/review/{ids['unsure']}/image", headers=KEY)
    assert other.status_code == 404


def test_a_label_is_recorded_for_the_look_alikes_by_the_page(client, captures):
    folder, ids = captures
    response = client.post("/v1/models/tiny/review", json={"id": ids["unsure"], "label": "fox"})
    assert response.status_code == 401  # the training key, not none
    response = client.post(
        "/v1/models/tiny/review", json={"id": ids["unsure"], "label": "fox"}, headers=KEY
    )
    assert response.status_code == 200, response.json
    assert sorted(response.json["labelled"]) == sorted([ids["unsure"], ids["resized"]])
    assert response.json["left"] == 1
    stored = reviews(folder, "tiny")
    assert {i: (r["label"], r["by"]) for i, r in stored.items()} == {
        ids["unsure"]: ("fox", "page"),
        ids["resized"]: ("fox", "page"),
    }
    queue = client.get("/v1/models/tiny/review", headers=KEY).json
    assert [item["id"] for item in queue["items"]] == [ids["abstained"]]
    assert queue["left"] == 1 and queue["reviewed"] == 2
    done = client.get("/v1/models/tiny/review?include_done=true", headers=KEY).json["items"]
    assert [item["reviewed"] for item in done] == [None, "fox"]


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"id": "new", "label": "cat"}, 404, "prediction_not_captured"),
        ({"id": "abstained", "label": "zebra"}, 400, "unknown_label"),
        ({"id": "nonsense", "label": "cat"}, 400, "bad_request"),
        ({"id": "abstained"}, 400, "bad_request"),
    ],
)
def test_bad_reviews_are_refused_and_nothing_is_stored(client, captures, body, status, code):
    folder, ids = captures
    sent = {**body, "id": ids.get(body["id"], new_id() if body["id"] == "new" else body["id"])}
    response = client.post("/v1/models/tiny/review", json=sent, headers=KEY)
    assert response.status_code == status and response.json["code"] == code, response.json
    assert reviews(folder, "tiny") == {}


def test_capture_off_is_409(make_app):
    client = make_app(train_keys=("trainer",)).test_client()
    for response in (
        client.get("/v1/models/tiny/review", headers=KEY),
        client.post("/v1/models/tiny/review", json={"id": new_id(), "label": "cat"}, headers=KEY),
    ):
        assert response.status_code == 409 and response.json["code"] == "capture_off"


def test_review_needs_training_on_as_the_jobs_api_does(make_app, captures):
    folder, ids = captures
    off = make_app(capture_dir=folder.root, api_keys=("predictor",)).test_client()
    predictor = {"Authorization": "Bearer predictor"}
    for path in ("/v1/models/tiny/review", f"/v1/models/tiny/review/{ids['unsure']}/image"):
        response = off.get(path, headers=predictor)
        assert response.status_code == 403 and response.json["code"] == "training_disabled"
        assert "KTL_TRAIN_KEYS" in response.json["error"]
    keyed = make_app(
        capture_dir=folder.root, api_keys=("predictor",), train_keys=("trainer",)
    ).test_client()
    assert keyed.get("/v1/models/tiny/review", headers=predictor).status_code == 401
    assert keyed.get("/v1/models/tiny/review", headers=KEY).status_code == 200
    opened = make_app(capture_dir=folder.root, training="open").test_client()
    assert opened.get("/v1/models/tiny/review").status_code == 200
