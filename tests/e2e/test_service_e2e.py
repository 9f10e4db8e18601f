"""The service under real gunicorn: predictions equal the in-process model, and a
version published while it runs becomes the default with no failed request."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from models.bundle import load_bundle, save_bundle
from models.engines.inference import Classifier
from models.preprocessing import load_image
from models.store import ModelStore
from tests.support.cli import ktl
from tests.support.server import Gunicorn
from tests.support.tiny import tiny_metadata, tiny_model

pytestmark = pytest.mark.slow

METADATA = tiny_metadata()  # the served bundle and every version published in the tests


def encode(fmt: str, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """gunicorn with service/gunicorn.conf.py, started from a folder outside the repo."""
    work = tmp_path_factory.mktemp("e2e")
    store = work / "store"
    save_bundle(ModelStore(store), tiny_model(1), METADATA)
    with Gunicorn(store, reload_interval=0.5, log_path=work / "server.log") as running:
        yield {"base": running.base, "store": store, "log": running.log_path}


def test_predictions_equal_the_in_process_model_and_ktl_predict(server, tmp_path):
    classifier = Classifier(load_bundle(server["store"] / "tiny" / "1"))
    answers = {}
    for fmt, name in (("JPEG", "photo.jpg"), ("PNG", "drawing.png")):
        data = encode(fmt, seed=len(name))
        (tmp_path / name).write_bytes(data)
        response = requests.post(
            f"{server['base']}/v1/models/tiny/predict",
            files={"image": (name, data, f"image/{fmt.lower()}")},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        [prediction] = response.json()["predictions"]
        assert prediction["filename"] == name
        probabilities = list(prediction["probabilities"].values())
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        expected = classifier.predict(load_image(data, (32, 32))[None])[0]
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        answers[name] = prediction

    offline = ktl(
        "predict", str(tmp_path / "photo.jpg"), str(tmp_path / "drawing.png"),
        "--name", "tiny", "--version", "1", "--store", str(server["store"]), "--json",
    )  # fmt: skip
    assert offline.returncode == 0, offline.stderr
    for prediction in json.loads(offline.stdout)["predictions"]:
        served = answers[prediction["filename"]]
        assert [t["label"] for t in prediction["top"]] == [t["label"] for t in served["top"]]
        np.testing.assert_allclose(
            list(prediction["probabilities"].values()),
            list(served["probabilities"].values()),
            atol=1e-5,
        )

    access = [
        json.loads(line) for line in server["log"].read_text().splitlines() if line.startswith("{")
    ]
    assert any(
        entry["path"] == "/v1/models/tiny/predict" and entry["status"] == 200 for entry in access
    )


def test_a_version_published_while_serving_becomes_the_default_without_a_failure(server):
    url = f"{server['base']}/v1/models/tiny/predict"
    data = encode("PNG", seed=7)
    results: list[tuple[int, int | None]] = []
    stop_sending = threading.Event()

    def send() -> None:
        with requests.Session() as session:
            while not stop_sending.is_set():
                response = session.post(
                    url, data=data, headers={"Content-Type": "image/png"}, timeout=30
                )
                version = response.json().get("version") if response.ok else None
                results.append((response.status_code, version))

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 10
        while not results:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        version, _ = save_bundle(ModelStore(server["store"]), tiny_model(2), METADATA)
        assert version == 2
        deadline = time.monotonic() + 30
        while not results or results[-1][1] != 2:
            assert time.monotonic() < deadline, "version 2 was never served"
            time.sleep(0.05)
        seen = len(results)
        while len(results) < seen + 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop_sending.set()
        sender.join(30)

    assert all(status == 200 for status, _ in results), results
    versions = [version for _, version in results]
    first_two = versions.index(2)
    assert versions[0] == 1
    assert set(versions[:first_two]) == {1} and set(versions[first_two:]) == {2}
    models = requests.get(f"{server['base']}/v1/models", timeout=10).json()["models"]
    assert models[0]["default_version"] == 2
