"""The bad-input corpus (tests/corpus.py) through the Flask test client: every case
gets API.md's status and a JSON body, and the service keeps serving afterwards.
The same corpus runs against a live gunicorn in tests/e2e/test_corpus_e2e.py."""

from __future__ import annotations

import base64
import io

import pytest

from tests import corpus

CASES = corpus.http_cases()
# What gunicorn hands the app for a chunked body: no Content-Length, input terminated.
CHUNKED = {"Transfer-Encoding": "chunked"}
TERMINATED = {"wsgi.input_terminated": True}


@pytest.fixture(scope="module")
def corpus_client(tiny_store):
    from service.app import create_app
    from service.config import ServiceConfig

    app = create_app(ServiceConfig(model_store=tiny_store, reload_interval=0, **corpus.CONFIG))
    yield app.test_client()
    app.extensions["ktl"].registry.close()


def send(client, case: corpus.HttpCase):
    return client.open(case.path, method=case.method, data=case.body, headers=list(case.headers))


def test_the_corpus_is_big_and_the_app_answers_it_with_every_status(corpus_client):
    assert len(CASES) >= 40
    assert sum(file.valid for file in corpus.image_files()) >= 20
    assert sum(not file.valid for file in corpus.image_files()) >= 10
    observed = {send(corpus_client, case).status_code for case in CASES}
    assert observed == {200, 400, 404, 405, 413, 415}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_gets_its_status_and_a_json_body(corpus_client, case):
    response = send(corpus_client, case)
    corpus.check_response(
        case, response.status_code, response.content_type or "", response.get_data()
    )


def test_the_service_still_serves_after_the_whole_corpus(corpus_client):
    for case in CASES:
        send(corpus_client, case)
    assert corpus_client.get("/healthz").json == {"status": "ok"}
    assert corpus_client.get("/readyz").status_code == 200
    png = corpus.image_files()[0].data
    response = corpus_client.post("/v1/models/tiny/predict", data=png, content_type="image/png")
    assert response.status_code == 200
    assert len(response.json["predictions"]) == 1


@pytest.mark.parametrize("route", ["/v1/models/tiny/predict", "/v1/models/tiny:predict"])
def test_a_chunked_body_over_the_limit_is_413_not_cut_short(corpus_client, route):
    # Gunicorn passes chunked bodies with no Content-Length and wsgi.input_terminated;
    # werkzeug alone would cut this one at 1 MB and classify the PNG in front of it.
    png = corpus.image_files()[0].data
    if route.endswith(":predict"):
        body = b'{"instances": [{"b64": "' + base64.b64encode(png) + b'"}]}' + b" " * 2**21
        content_type = "application/json"
    else:
        body, content_type = png + b"\0" * 2**21, "image/png"
    response = corpus_client.post(
        route, input_stream=io.BytesIO(body), content_type=content_type,
        headers=CHUNKED, environ_overrides=TERMINATED,
    )  # fmt: skip
    assert response.status_code == 413, response.get_data(as_text=True)
    assert response.json["code"] == "payload_too_large"

    small = body[: corpus.LIMIT_BYTES // 2]
    response = corpus_client.post(
        route, input_stream=io.BytesIO(small), content_type=content_type,
        headers=CHUNKED, environ_overrides=TERMINATED,
    )  # fmt: skip
    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_chunked_multipart_upload_over_the_limit_is_413(corpus_client):
    png = corpus.image_files()[0].data
    body, content_type = corpus.multipart([("image", "a.png", png + b"\0" * 2**21, "image/png")])
    response = corpus_client.post(
        "/v1/models/tiny/predict", input_stream=io.BytesIO(body), content_type=content_type,
        headers=CHUNKED, environ_overrides=TERMINATED,
    )  # fmt: skip
    assert response.status_code == 413, response.get_data(as_text=True)


def test_every_route_that_takes_a_body_bounds_a_chunked_one(corpus_client):
    app = corpus_client.application
    routes = sorted(
        rule.rule.replace("<segment:name>", "tiny")
        .replace("<segment:version>", "1")
        .replace("<segment:label>", "stable")
        for rule in app.url_map.iter_rules()
        # a dataset archive has its own limit (tests/service/test_jobs_api.py)
        if "POST" in (rule.methods or ()) and rule.rule != "/v1/jobs"
    )
    assert len(routes) == 16
    for route in routes:
        response = corpus_client.post(
            f"{route}?layer=block1_pool",  # (the one query parameter a route requires)
            input_stream=io.BytesIO(b"\0" * (corpus.LIMIT_BYTES + 1)),
            content_type="application/octet-stream", headers=CHUNKED,
            environ_overrides=TERMINATED,
        )  # fmt: skip
        assert response.status_code == 413, route
        assert response.json["code"] == "payload_too_large", route


def test_the_body_bound_is_one_hook_for_the_whole_app(corpus_client):
    from service.guards.request_limits import bound_unsized_body

    hooks = corpus_client.application.before_request_funcs
    assert hooks[None].count(bound_unsized_body) == 1
    assert all(bound_unsized_body not in funcs for name, funcs in hooks.items() if name)
