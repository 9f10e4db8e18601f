from __future__ import annotations

import numpy as np
import pytest

from models.bundle import load_bundle
from models.preprocessing import load_image
from service.contract.errors import ImageTooLarge, InvalidImage
from service.serving.predictor import BatchSettings, ImageUpload, Predictor

BATCHING = BatchSettings(max_batch_size=4, max_delay_s=0, queue_size=8)


@pytest.fixture(scope="module")
def classifier(tiny_store):
    return load_bundle(tiny_store / "tiny" / "1").classifier


@pytest.fixture
def predictor(classifier):
    return Predictor(classifier, BATCHING, max_pixels=10_000)


def test_predictions_equal_the_classifier_on_the_shared_preprocessing(
    predictor, classifier, image_bytes
):
    data = [image_bytes("PNG", seed=1), image_bytes("JPEG", seed=2), image_bytes("GIF", seed=3)]
    rows = predictor.predict([ImageUpload(d) for d in data])
    expected = classifier.predict(np.stack([load_image(d, (32, 32)) for d in data]))
    np.testing.assert_allclose(rows, expected, atol=1e-6)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-5)


def test_native_body_lists_every_label_in_order_and_top_sorted(predictor, image_bytes, labels):
    body = predictor.predict_native(
        [ImageUpload(image_bytes(seed=4), filename="a.png"), ImageUpload(image_bytes(seed=5))],
        top_k=2,
    ).model_dump(mode="json")
    assert (body["model"], body["version"]) == ("tiny", 1)
    first, second = body["predictions"]
    assert (first["filename"], second["filename"]) == ("a.png", None)
    assert list(first["probabilities"]) == labels
    assert sum(first["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    probabilities = [entry["probability"] for entry in first["top"]]
    assert len(probabilities) == 2
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(entry["label"] == labels[entry["index"]] for entry in first["top"])


def test_top_k_is_clipped_to_the_number_of_labels(predictor, image_bytes, labels):
    body = predictor.predict_native([ImageUpload(image_bytes())], top_k=50).model_dump()
    assert len(body["predictions"][0]["top"]) == len(labels)


def test_a_bad_image_is_named_in_the_error(predictor, image_bytes):
    uploads = [ImageUpload(image_bytes(), "file 'ok.png'"), ImageUpload(b"GIF89a", "file 'x.gif'")]
    with pytest.raises(InvalidImage, match="file 'x.gif'") as caught:
        predictor.predict(uploads)
    assert caught.value.status == 400


def test_an_image_over_the_pixel_limit_is_413(predictor, image_bytes):
    with pytest.raises(ImageTooLarge, match="KTL_MAX_IMAGE_PIXELS") as caught:
        predictor.predict([ImageUpload(image_bytes(size=(200, 100)))])
    assert caught.value.status == 413
