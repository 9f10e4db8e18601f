from __future__ import annotations

import pytest

KEYS = ("k3y-one", "k3y-two")
PROTECTED = [
    ("get", "/v1/models"),
    ("get", "/v1/models/tiny"),
    ("get", "/v1/models/tiny/versions/1"),
    ("post", "/v1/models/tiny/predict"),
    ("post", "/v1/models/tiny/versions/1/predict"),
    ("post", "/v1/models/tiny:predict"),
    ("post", "/v1/models/tiny/versions/1:predict"),
    ("get", "/metrics"),
]


@pytest.fixture
def client(make_app):
    return make_app(api_keys=KEYS).test_client()


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_protected_routes_need_a_key(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401
    assert response.json["code"] == "unauthorized"
    assert "Authorization: Bearer" in response.json["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer wrong", "Bearer k3y-on", "Basic azN5LW9uZQ==", "k3y-one", "Bearer ключ"]
)
def test_a_wrong_key_is_401(client, header):
    response = client.get("/v1/models", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("key", KEYS)
def test_any_configured_key_opens_the_routes(client, key, image_bytes):
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/models", headers=headers).status_code == 200
    assert client.get("/metrics", headers=headers).status_code == 200
    response = client.post(
        "/v1/models/tiny/predict", data=image_bytes(), content_type="image/png", headers=headers
    )
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json"])
def test_health_and_the_api_document_stay_open(client, path):
    assert client.get(path).status_code == 200


def test_no_keys_configured_means_no_authentication(make_app):
    assert make_app().test_client().get("/v1/models").status_code == 200
