"""Native predict with ``?tta=true``: the probabilities averaged over the views of
``models.engines.tta``, the same ones ``ktl train --tta`` scores."""

from __future__ import annotations

import io

import numpy as np
import pytest

from models.bundle import load_bundle
from models.engines.inference import Classifier
from models.engines.tta import VIEWS, views
from models.preprocessing import load_image

PREDICT = "/v1/models/tiny/predict"


def _post(client, query: str, *images: bytes):
    files = [(io.BytesIO(data), f"{i}.png") for i, data in enumerate(images)]
    return client.post(PREDICT + query, data={"image": files}, content_type="multipart/form-data")


def test_tta_averages_the_views_of_each_image_of_a_batch(client, image_bytes, tiny_store):
    images = [image_bytes("PNG", seed=3), image_bytes("PNG", seed=4)]
    plain, averaged = _post(client, "", *images), _post(client, "?tta=true", *images)
    assert plain.status_code == averaged.status_code == 200, averaged.get_data(as_text=True)
    classifier = Classifier(load_bundle(tiny_store / "tiny" / "1"))
    pixels = np.stack([load_image(data, (32, 32)) for data in images])
    per_view = classifier.predict(views(pixels).numpy()).reshape(len(VIEWS), 2, -1)
    for index, prediction in enumerate(averaged.json["predictions"]):
        got = list(prediction["probabilities"].values())
        np.testing.assert_allclose(got, per_view[:, index].mean(axis=0), atol=1e-5)
        assert sum(got) == pytest.approx(1.0, abs=1e-5)
        unchanged = list(plain.json["predictions"][index]["probabilities"].values())
        np.testing.assert_allclose(unchanged, per_view[0, index], atol=1e-5)
    assert not np.allclose(
        [list(p["probabilities"].values()) for p in plain.json["predictions"]],
        [list(p["probabilities"].values()) for p in averaged.json["predictions"]],
    ), "the views change the answer, so the test can tell TTA from none"


def test_tta_false_is_the_plain_answer_and_a_bad_value_is_a_400(client, image_bytes):
    image = image_bytes("PNG", seed=5)
    unasked, plain = _post(client, "?tta=false", image).json, _post(client, "", image).json
    for body in (unasked, plain):  # each prediction has its own id
        assert body["predictions"][0].pop("id") is not None
    assert unasked == plain
    response = _post(client, "?tta=perhaps", image)
    assert response.status_code == 400 and response.json["code"] == "bad_request"
    assert "tta" in response.json["error"]
