from __future__ import annotations

import shutil

from prometheus_client.parser import text_string_to_metric_families


def samples(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_requests_latency_batches_and_models_are_counted(make_app, image_bytes):
    client = make_app().test_client()
    for _ in range(2):
        assert (
            client.post(
                "/v1/models/tiny/predict", data=image_bytes(), content_type="image/png"
            ).status_code
            == 200
        )
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get("/no/such/route").status_code == 404
    found = samples(client)

    def value(name, **labels):
        return found.get((name, tuple(sorted(labels.items()))))

    predict = {"route": "/v1/models/{name}/predict", "method": "POST"}
    assert value("ktl_http_requests_total", status="200", **predict) == 2
    assert value("ktl_http_request_duration_seconds_count", **predict) == 2
    assert (
        value("ktl_http_requests_total", route="/v1/models/{name}", method="GET", status="404") == 1
    )
    assert value("ktl_http_requests_total", route="unmatched", method="GET", status="404") == 1
    # Two forward passes of one image each (warm-up runs outside the batcher).
    assert value("ktl_inference_batch_size_count") == 2
    assert value("ktl_inference_batch_size_sum") == 2
    assert value("ktl_inference_duration_seconds_count") == 2
    assert value("ktl_models_loaded", model="tiny") == 1
    assert value("ktl_model_default_version", model="tiny") == 1
    assert value("ktl_model_versions_unavailable", model="tiny") == 0


def test_each_app_has_its_own_registry(make_app):
    first, second = make_app().test_client(), make_app().test_client()
    for _ in range(3):
        first.get("/healthz")
    key = ("ktl_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    assert samples(first)[key] == 3
    assert key not in samples(second)


def test_model_loads_are_counted_by_outcome_and_not_again_while_nothing_changes(make_app, store):
    from models.bundle import load_bundle
    from models.store import ModelStore

    staging = ModelStore(store).staging_dir("tiny")
    shutil.copytree(store / "tiny" / "1", staging, dirs_exist_ok=True)
    metadata = load_bundle(store / "tiny" / "1").metadata.model_dump(mode="json")
    assert ModelStore(store).publish(staging, "tiny", metadata) == 2
    with open(store / "tiny" / "2" / "model.keras", "ab") as f:
        f.write(b"tampered")  # the checksum refuses it
    app = make_app(model_store=store)
    client = app.test_client()
    app.extensions["ktl"].registry.reload()  # a poll with nothing changed
    found = samples(client)

    def loads(version, outcome):
        labels = (("model", "tiny"), ("outcome", outcome), ("version", version))
        return found.get(("ktl_model_loads_total", labels))

    assert loads("2", "failed") == 1  # the newest is tried, refused, not retried
    assert loads("1", "loaded") == 1  # and the one before serves
    assert loads("1", "failed") is None and loads("2", "loaded") is None
