"""The Open Inference Protocol routes driven by the stock ``tritonclient.http`` client
at its defaults (binary tensor data both ways) against a real gunicorn."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.bundle import load_bundle, save_bundle
from models.engines.inference import Classifier
from models.ids import is_id
from models.preprocessing import load_image
from models.store import ModelStore
from tests.support.server import Gunicorn
from tests.support.tiny import tiny_metadata, tiny_model

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow

LABELS = ["cat", "dog", "fox"]
SIZE = (32, 32)


def _encode(seed: int, size: tuple[int, int]) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("kserve")
    store = work / "store"
    save_bundle(ModelStore(store), tiny_model(1, len(LABELS)), tiny_metadata("tiny", LABELS))
    with Gunicorn(store, log_path=work / "server.log") as running:
        yield {"base": running.base, "store": store}


@pytest.fixture
def client(server):
    url = server["base"].removeprefix("http://")
    client = httpclient.InferenceServerClient(url=url)
    yield client
    client.close()


def test_health_and_metadata_through_tritonclient(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("tiny")
    assert client.is_model_ready("tiny", model_version="1")
    assert not client.is_model_ready("nope")
    metadata = client.get_model_metadata("tiny")
    assert metadata["name"] == "tiny" and metadata["versions"] == ["1"]
    assert {o["name"] for o in metadata["outputs"]} == {"probabilities", "labels", "decision", "id"}


def test_infer_with_encoded_images_at_client_defaults(server, client):
    images = [_encode(1, (32, 32)), _encode(2, (120, 90))]
    tensor = httpclient.InferInput("image_bytes", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))  # binary_data=True
    result = client.infer("tiny", [tensor], request_id="r-1")  # outputs: all, binary
    response = result.get_response()
    assert response["id"] == "r-1" and response["model_version"] == "1"
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])

    classifier = Classifier(load_bundle(server["store"] / "tiny" / "1"))
    expected = classifier.predict(np.stack([load_image(d, SIZE) for d in images]))
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (2, len(LABELS))
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    labels = [label.decode() for label in result.as_numpy("labels")]
    assert labels == [LABELS[i] for i in expected.argmax(axis=1)]
    ids = [identifier.decode() for identifier in result.as_numpy("id")]
    assert len(set(ids)) == 2 and all(is_id(identifier) for identifier in ids)


def test_infer_with_pixels_a_version_and_requested_outputs(server, client):
    pixels = np.random.default_rng(3).integers(0, 256, (3, *SIZE, 3), dtype=np.uint8)
    tensor = httpclient.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    outputs = [httpclient.InferRequestedOutput("labels", binary_data=False)]
    result = client.infer("tiny", [tensor], model_version="1", outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["labels"]
    assert result.as_numpy("probabilities") is None
    classifier = Classifier(load_bundle(server["store"] / "tiny" / "1"))
    expected = classifier.predict(pixels).argmax(axis=1)
    assert [str(label) for label in result.as_numpy("labels")] == [LABELS[i] for i in expected]


def test_errors_reach_the_client_with_their_status(client):
    tensor = httpclient.InferInput("image_bytes", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as bad_image:
        client.infer("tiny", [tensor])
    assert bad_image.value.status() == "400"
    assert "not an image" in bad_image.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", [tensor])
    assert unknown.value.status() == "404"
