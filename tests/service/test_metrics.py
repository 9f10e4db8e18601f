from __future__ import annotations

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
