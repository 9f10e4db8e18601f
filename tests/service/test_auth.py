from __future__ import annotations

import pytest

from service.contract.operation import KeySet, Reply, operation
from tests.support.apps import shared_app

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


@pytest.fixture(scope="module")
def keyed_app(tiny_store):
    """One app with keys for the tests that only send requests (none changes the app)."""
    with shared_app(model_store=tiny_store, api_keys=KEYS) as app:
        yield app


@pytest.fixture
def client(keyed_app):
    return keyed_app.test_client()


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


# --- one check for the whole app, driven by each view's @operation ---------------------


def test_a_new_route_without_an_operation_needs_the_key(make_app):
    app = make_app(api_keys=KEYS)

    @app.get("/throwaway")
    def throwaway():
        return {"ok": True}

    client = app.test_client()
    assert client.get("/throwaway").status_code == 401
    ok = client.get("/throwaway", headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert (ok.status_code, ok.json) == (200, {"ok": True})


def test_a_route_marked_public_is_open_and_one_marked_otherwise_is_not(make_app):
    app = make_app(api_keys=KEYS)

    @app.get("/open-throwaway")
    @operation("openThrowaway", summary="open", public=True, responses={200: Reply("ok")})
    def open_throwaway():
        return {"ok": True}

    @app.get("/guarded-throwaway")
    @operation("guardedThrowaway", summary="guarded", responses={200: Reply("ok")})
    def guarded_throwaway():
        return {"ok": True}

    client = app.test_client()
    assert client.get("/open-throwaway").status_code == 200
    assert client.get("/guarded-throwaway").status_code == 401


def test_a_route_needs_the_keys_of_its_own_key_set(make_app):
    reports = KeySet("reports", "KTL_REPORT_KEYS", "reportBearer", lambda config: ("r3port",))
    app = make_app(api_keys=KEYS)

    @app.get("/report-throwaway")
    @operation("reportThrowaway", summary="r", keys=reports, responses={200: Reply("ok")})
    def report_throwaway():
        return {"ok": True}

    client = app.test_client()
    predict_key = {"Authorization": f"Bearer {KEYS[0]}"}
    assert client.get("/report-throwaway", headers=predict_key).status_code == 401
    own_key = {"Authorization": "Bearer r3port"}
    assert client.get("/report-throwaway", headers=own_key).status_code == 200
    assert client.get("/v1/models", headers=own_key).status_code == 401


OPEN = [
    "/healthz", "/readyz", "/openapi.json", "/v2", "/v2/health/live", "/v2/health/ready",
    "/", "/static/app.js", "/models/tiny/versions/1/report",
]  # fmt: skip


@pytest.mark.parametrize("path", OPEN)
def test_probes_the_document_and_the_pages_are_open(client, path):
    with client.get(path) as response:  # pages are streamed files: closed when read
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/no/such/route", 404),
        ("delete", "/v1/models/tiny", 405),
        ("get", "/v2/models", 404),
    ],
)
def test_a_path_no_route_matches_needs_no_key(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.json["code"] != "unauthorized"


def test_report_files_and_kserve_models_need_the_key(client):
    for path in (
        "/v1/models/tiny/versions/1/reports/metrics.json",
        "/v2/models/tiny",
        "/v2/models/tiny/versions/1/ready",
    ):
        assert client.get(path).status_code == 401, path


def test_the_key_check_is_one_hook_for_the_whole_app(make_app):
    from service.guards import auth

    app = make_app(api_keys=KEYS)
    auth.init_app(app)  # idempotent
    assert app.before_request_funcs[None].count(auth.require_key) == 1
    assert all(
        auth.require_key not in hooks for name, hooks in app.before_request_funcs.items() if name
    )
