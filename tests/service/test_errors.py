from __future__ import annotations

import logging

from service.serving.predictor import Predictor


def test_an_unknown_route_is_a_json_404(client):
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json == {
        "error": "No route '/v2/nothing'; GET /openapi.json lists the routes",
        "code": "not_found",
    }


def test_a_wrong_method_is_a_json_405_with_allow(client):
    response = client.delete("/v1/models/tiny")
    assert response.status_code == 405
    assert response.json["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_an_unexpected_exception_is_a_generic_500_and_its_traceback_is_logged(
    client, monkeypatch, caplog, image_bytes
):
    def explode(self, *args):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(Predictor, "predict_native", explode)
    with caplog.at_level(logging.ERROR, logger="ktl.service"):
        response = client.post(
            "/v1/models/tiny/predict", data=image_bytes(), content_type="image/png"
        )
    assert response.status_code == 500
    assert response.json == {
        "error": "Internal server error; see the server log",
        "code": "internal_error",
    }
    [record] = [r for r in caplog.records if r.exc_info]
    assert "POST /v1/models/tiny/predict" in record.getMessage()
    assert "secret internal detail" in str(record.exc_info[1])
