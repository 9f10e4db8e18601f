"""The loop's first half against a real gunicorn with 2 workers: capture on, a
stream of predictions in both protocols, the per-minute cap across workers, feedback
for some ids, and the monitor's figures (the session's trained bundle)."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
import requests
from PIL import Image

from models.capture.folder import CaptureFolder, minute_of
from models.ids import is_id
from tests.support.cli import ktl_here
from tests.support.server import Gunicorn
from tests.support.trained import NAME, Trained

pytestmark = pytest.mark.slow

CAP = 8


def _predict(base: str, path: Path, index: int) -> str:
    data = path.read_bytes()
    if index % 2:  # half TF Serving, half native
        body = {"instances": [{"b64": base64.b64encode(data).decode()}]}
        response = requests.post(f"{base}/v1/models/{NAME}:predict", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["ids"][0]
    files = {"image": (path.name, data)}
    response = requests.post(f"{base}/v1/models/{NAME}/predict", files=files, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]["id"]


def _series(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def _monitor(base: str, requests_expected: int) -> dict:
    """The monitor once both workers' writers have logged every prediction."""
    deadline = time.monotonic() + 30
    while True:
        body = requests.get(f"{base}/v1/models/{NAME}/monitor", timeout=30).json()
        seen = sum(version["requests"] for version in body["versions"])
        if seen >= requests_expected or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_capture_feedback_and_monitor_across_two_workers(trained_store: Trained, tmp_path):
    store = trained_store.copy_to(tmp_path / "store")
    capture = tmp_path / "capture"
    images = sorted(trained_store.data.glob("*/*.png"))[::2][:60]  # every colour
    env = {
        "KTL_CAPTURE_DIR": str(capture),
        "KTL_CAPTURE": "sample:1",
        "KTL_CAPTURE_MAX_PER_MINUTE": str(CAP),
        "KTL_CAPTURE_MAX_MB": "5",
    }
    with Gunicorn(store, workers=2, env=env, log_path=tmp_path / "g.log") as server:
        with ThreadPoolExecutor(6) as pool:
            ids = list(pool.map(partial(_predict, server.base), images, range(len(images))))
        monitor = _monitor(server.base, len(ids))
        truth = [path.parent.name for path in images]
        sent = [{"id": i, "label": label} for i, label in zip(ids[:50], truth[:50], strict=True)]
        stored = requests.post(f"{server.base}/v1/models/{NAME}/feedback", json=sent, timeout=30)
        assert stored.status_code == 200, stored.text
        unknown = requests.post(
            f"{server.base}/v1/models/{NAME}/feedback",
            json={"id": ids[0], "label": "purple"},
            timeout=30,
        )
        after = requests.get(f"{server.base}/v1/models/{NAME}/monitor", timeout=30).json()
        metrics = requests.get(f"{server.base}/metrics", timeout=30).text

    assert len(set(ids)) == len(ids) == 60
    [version] = monitor["versions"]
    assert version["version"] == 1 and version["requests"] == 60
    assert sum(version["confidence_histogram"]["counts"]) == 60
    assert set(version["class_mix"]) <= {"red", "green", "blue"}
    assert version["test_class_mix"] is not None and 0 <= version["class_mix_distance"] <= 1
    # Training saved the ATC threshold; both label-free estimates are shares.
    estimates = version["estimated_accuracy"]
    assert 0 < estimates["average_confidence"] <= 1
    assert 0 <= estimates["average_thresholded_confidence"] <= 1

    # The per-minute cap holds over both workers (the stream may straddle a minute).
    captured = [json.loads(p.read_text()) for p in (capture / NAME / "images").glob("*.json")]
    minutes = {minute_of(i) for i in ids}
    assert 0 < len(captured) <= CAP * len(minutes)
    assert all(set(r["probabilities"]) == {"red", "green", "blue"} for r in captured)
    assert {r["engine"] for r in captured} <= {"keras", "int8"}
    total, _ = CaptureFolder(capture).size()
    assert total <= 5 * 1024 * 1024

    # ktl review reads what the workers captured: abstained first, then the least sure
    listed = ktl_here("review", NAME, "--capture-dir", str(capture), "--json", "--limit", "99")
    assert listed.returncode == 0, listed.stderr
    queue = json.loads(listed.stdout)
    assert queue["captured"] == len(captured)
    order = [(not item["abstained"], item["confidence"]) for item in queue["items"]]
    assert order == sorted(order) and order
    items = queue["items"]
    grouped = [item["id"] for item in items] + [a for i in items for a in i["near_duplicates"]]
    assert sorted(grouped) == sorted(r["id"] for r in captured)  # each capture, once

    feedback = after["versions"][0]["feedback"]
    right = sum(f["correct"] for f in stored.json()["feedback"])
    assert feedback["count"] == 50 and feedback["correct"] == right
    low, high = feedback["interval"]
    assert low <= right / 50 <= high
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_label"
    assert "ktl_prediction_confidence_count" in metrics and "ktl_capture_images_total" in metrics
    # ATC from the series, over both workers, is the monitor's.
    above = _series(metrics, "ktl_predictions_above_atc_threshold_total")
    assert above / 60 == pytest.approx(estimates["average_thresholded_confidence"], abs=1e-6)


def _try_predict(base: str, path: Path) -> int | None:
    """The status of one native prediction, None when the connection broke."""
    try:
        files = {"image": (path.name, path.read_bytes())}
        return requests.post(
            f"{base}/v1/models/{NAME}/predict", files=files, timeout=60
        ).status_code
    except requests.ConnectionError:
        return None


def test_a_worker_killed_mid_stream_loses_no_capture_it_counted(trained_store: Trained, tmp_path):
    """SIGKILL a worker while both capture every prediction: every capture the
    metrics count (their counter rises only once the image and its record are written)
    is on disk whole, and no request sent to a living worker failed."""
    store = trained_store.copy_to(tmp_path / "store")
    capture = tmp_path / "capture"
    images = sorted(trained_store.data.glob("*/*.png"))[:90]
    env = {"KTL_CAPTURE_DIR": str(capture), "KTL_CAPTURE": "sample:1"}
    env |= {"KTL_CAPTURE_MAX_PER_MINUTE": "10000", "KTL_CAPTURE_MAX_MB": "50"}
    with Gunicorn(store, workers=2, env=env, log_path=tmp_path / "g.log") as server:
        victim = server.workers()[0]
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(_try_predict, server.base, path) for path in images]
            deadline = time.monotonic() + 120
            while sum(f.done() for f in futures) < 30:
                assert time.monotonic() < deadline, "the stream did not start"
                time.sleep(0.05)
            os.kill(victim, signal.SIGKILL)
            statuses = [f.result() for f in futures]
        deadline = time.monotonic() + 60
        while victim in server.workers() or len(server.workers()) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.2)
        metrics = requests.get(f"{server.base}/metrics", timeout=30).text

    assert {s for s in statuses if s is not None} == {200}  # only in-flight ones broke
    assert statuses.count(None) <= 4
    counted = _series(metrics, "ktl_capture_images_total")
    records = [p for p in (capture / NAME / "images").glob("*.json") if is_id(p.stem)]
    for path in records:  # a record is written only after its image, both atomically
        record = json.loads(path.read_text())
        with Image.open(path.parent / record["image"]) as image:
            image.verify()
    assert 30 <= counted <= len(records)
