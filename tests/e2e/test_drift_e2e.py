"""Embedding drift against a real gunicorn (issue 29): the session's trained bundle
served with capture on, an in-distribution stream (new images of the training
colours) raises no drift; a shifted stream (images of colours none of the classes
covers, and the known colours shifted) then does."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import requests

from tests.support.data import COLOURS, colour_image
from tests.support.server import Gunicorn
from tests.support.trained import NAME, Trained

pytestmark = pytest.mark.slow

PER_CLASS = 20  # 60 images a stream: twice the monitor's minimum


def _png(colour: tuple[int, int, int], rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    colour_image(colour, 20, rng).save(buffer, "PNG")  # as the fixture's data: 20 px
    return buffer.getvalue()


def _unshifted(seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [_png(colour, rng) for colour in COLOURS.values() for _ in range(PER_CLASS)]


def _shifted(seed: int) -> list[bytes]:
    """A new kind (yellow, purple, grey: no class covers them), then the known colours
    shifted towards one another: 120 images, so that after the 60 unshifted ones two
    thirds of the monitor's window are shifted."""
    rng = np.random.default_rng(seed)
    new = [(230, 210, 40), (150, 40, 170), (128, 128, 128)]
    moved = [tuple(int(np.clip(c + 70, 0, 255)) for c in colour) for colour in COLOURS.values()]
    return [_png(colour, rng) for colour in new + moved for _ in range(PER_CLASS)]


def _stream(base: str, images: list[bytes]) -> None:
    for index, data in enumerate(images):
        files = {"image": (f"{index}.png", data)}
        response = requests.post(f"{base}/v1/models/{NAME}/predict", files=files, timeout=60)
        assert response.status_code == 200, response.text


def _drift(base: str, expected: int) -> dict:
    """The version's monitor entry once the worker's writer has every capture."""
    for _ in range(150):
        [version] = requests.get(f"{base}/v1/models/{NAME}/monitor", timeout=60).json()["versions"]
        if version["drift"] and version["drift"]["images"] >= expected:
            return version
        time.sleep(0.2)
    raise AssertionError(f"the monitor did not see {expected} images: {version}")


def test_no_drift_on_the_training_colours_then_drift_on_a_shifted_stream(
    trained_store: Trained, tmp_path
):
    store = trained_store.copy_to(tmp_path / "store")
    env = {
        "KTL_CAPTURE_DIR": str(tmp_path / "capture"),
        "KTL_CAPTURE": "sample:1",
        "KTL_CAPTURE_MAX_PER_MINUTE": "1000",
    }
    with Gunicorn(store, env=env, log_path=tmp_path / "g.log") as server:
        _stream(server.base, _unshifted(seed=11))
        unshifted = _drift(server.base, 3 * PER_CLASS)["drift"]
        _stream(server.base, _shifted(seed=12))
        shifted = _drift(server.base, 9 * PER_CLASS)["drift"]
        metrics = requests.get(f"{server.base}/metrics", timeout=30).text

    reference = trained_store.summary.to_json()["dataset"]["val_images"]
    assert unshifted["reference_rows"] == min(reference, 256)
    assert not unshifted["drifted"], unshifted
    assert shifted["drifted"], shifted
    assert shifted["score"] > unshifted["score"]
    assert f'ktl_embedding_drift_score{{model="{NAME}",version="1"}}' in metrics
