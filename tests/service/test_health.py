from __future__ import annotations


def test_healthz_is_ok_without_touching_a_model(make_app, tmp_path):
    client = make_app(model_store=tmp_path / "empty").test_client()
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_readyz_is_200_once_a_model_is_servable(client):
    response = client.get("/readyz")
    assert (response.status_code, response.json) == (200, {"status": "ready", "models": 1})


def test_readyz_is_503_without_a_servable_model(make_app, tmp_path, store, publish):
    response = make_app(model_store=tmp_path / "empty").test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["code"] == "not_ready"

    # A store whose only model is broken is not ready either.
    with open(store / "tiny" / "1" / "model.keras", "ab") as f:
        f.write(b"x")
    response = make_app(model_store=store).test_client().get("/readyz")
    assert response.status_code == 503
