"""The monitor's embedding drift through the app: the tiny model with a drift
reference of red images, an unshifted stream of other red images, then blue ones."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from models import drift
from models.bundle import save_bundle
from models.metadata import DriftReference, Monitoring
from models.networks.classifier import POOL_LAYER, pooled_model
from models.preprocessing import load_image
from models.store import ModelStore
from tests.support.data import COLOURS, colour_image
from tests.support.tiny import SIZE, tiny_metadata


def _png(colour: str, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    colour_image(COLOURS[colour], 20, rng).save(buffer, "PNG")
    return buffer.getvalue()


def _pngs(colour: str, count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [_png(colour, rng) for _ in range(count)]


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory, tiny_model):
    """``tiny`` 1 with a drift reference: the pooled features of 120 red images."""
    root = tmp_path_factory.mktemp("drift_store")
    pixels = np.stack([load_image(data, SIZE) for data in _pngs("red", 120, seed=1)])
    features = pooled_model(tiny_model).predict(pixels.astype(np.float32), verbose=0)
    described = DriftReference(
        file=drift.REFERENCE_FILE, rows=len(features), width=features.shape[1], layer=POOL_LAYER
    )
    metadata = tiny_metadata().replace(monitoring=Monitoring(drift_reference=described))
    artifacts = {drift.REFERENCE_FILE: drift.reference_bytes(features)}
    save_bundle(ModelStore(root), tiny_model, metadata, {}, artifacts)
    return root


def _app(make_app, tmp_path, **overrides):
    capture = {"capture_dir": tmp_path / "cap", "capture": "sample:1"}
    return make_app(**capture, capture_max_per_minute=1000, **overrides)


def _send(app, images: list[bytes]) -> None:
    client = app.test_client()
    instances = [{"b64": base64.b64encode(data).decode()} for data in images]
    assert client.post("/v1/models/tiny:predict", json={"instances": instances}).status_code == 200
    app.extensions["ktl"].capture.drain()


def _version(app) -> dict:
    body = app.test_client().get("/v1/models/tiny/monitor?window=600").json
    [version] = body["versions"]
    return version


def test_no_drift_on_unshifted_images_then_drift_on_shifted_ones(
    make_app, reference_store, tmp_path
):
    app = _app(make_app, tmp_path, model_store=reference_store)
    _send(app, _pngs("red", 40, seed=2))
    unshifted = _version(app)["drift"]
    assert unshifted["test"] == "mmd" and not unshifted["drifted"]
    assert (unshifted["images"], unshifted["reference_rows"]) == (40, 120)
    assert unshifted["p_value"] >= drift.SIGNIFICANCE
    _send(app, _pngs("blue", 40, seed=3))
    shifted = _version(app)
    assert shifted["drift"]["drifted"] and shifted["drift"]["images"] == 80
    assert shifted["drift"]["score"] > unshifted["score"]
    assert shifted["drift_unavailable"] is None
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    line = next(x for x in metrics.splitlines() if x.startswith("ktl_embedding_drift_score{"))
    assert 'model="tiny"' in line and 'version="1"' in line
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(shifted["drift"]["score"], rel=1e-5)


def test_too_few_images_is_no_test_and_says_why(make_app, reference_store, tmp_path):
    app = _app(make_app, tmp_path, model_store=reference_store)
    _send(app, _pngs("red", 5, seed=4))
    version = _version(app)
    assert version["drift"] is None
    assert "5 captured images" in version["drift_unavailable"]
    assert str(drift.MIN_IMAGES) in version["drift_unavailable"]


def test_a_version_without_a_reference_reports_drift_unavailable(make_app, tmp_path):
    app = _app(make_app, tmp_path)  # the plain tiny bundle
    _send(app, _pngs("red", 3, seed=5))
    version = _version(app)
    assert version["drift"] is None and "no drift reference" in version["drift_unavailable"]


def test_the_feature_pass_matches_the_reference_computation(reference_store, tiny_model):
    from models.bundle import load_bundle

    bundle = load_bundle(reference_store / "tiny" / "1")
    pixels = np.stack([load_image(data, SIZE) for data in _pngs("red", 3, seed=1)])
    expected = pooled_model(tiny_model).predict(pixels.astype(np.float32), verbose=0)
    np.testing.assert_allclose(bundle.pooled_features(pixels), expected, rtol=1e-4, atol=1e-5)
    assert bundle.pooled_features is bundle.pooled_features  # built once per loaded version
    assert bundle.drift_reference().shape == (120, expected.shape[1])


def test_the_openapi_document_describes_the_drift_entry(client):
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    assert {"drift", "drift_unavailable"} <= set(schemas["VersionMonitor"]["properties"])
    drift_schema = schemas["Drift"]["properties"]
    assert {"test", "score", "p_value", "drifted", "images", "reference_rows"} <= set(drift_schema)
