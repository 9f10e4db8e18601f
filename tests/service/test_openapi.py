from __future__ import annotations

import json

import pytest

from service.contract.openapi import UndocumentedRoute, build_document
from service.contract.paths import openapi_path

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def test_every_route_is_documented_and_every_documented_route_exists(app, client):
    document = client.get("/openapi.json").json
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (openapi_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - IGNORED_METHODS
    }
    assert documented == served


def test_the_document_is_openapi_3_and_its_references_resolve(client):
    document = client.get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    schemas = document["components"]["schemas"]

    def references(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from references(value)
        elif isinstance(node, list):
            for value in node:
                yield from references(value)

    refs = set(references(document))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas

    operation_ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
    for path, operations in document["paths"].items():
        declared = {
            p["name"]
            for op in operations.values()
            for p in op.get("parameters", [])
            if p["in"] == "path"
        }
        assert declared == set(path.replace("}", "{").split("{")[1::2]), path


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ("/v1/models/<segment:name>:predict", "/v1/models/{name}:predict"),
        ("/v1/models/<name>/versions/<int:version>", "/v1/models/{name}/versions/{version}"),
        ("/healthz", "/healthz"),
    ],
)
def test_openapi_path(rule, path):
    assert openapi_path(rule) == path


# --- generated from the routes ----------------------------------------------------------

OPERATION_IDS = {
    "healthz", "readyz", "listModels", "getModel", "getModelVersion", "predict",
    "predictVersion", "tfServingPredict", "tfServingPredictVersion", "explain",
    "explainVersion", "activations", "activationsVersion", "kserveServerMetadata",
    "kserveLive", "kserveReady", "kserveModel", "kserveModelVersion", "kserveModelReady",
    "kserveModelVersionReady", "kserveInfer", "kserveInferVersion", "page", "static",
    "reportPage", "reportFile", "reportTrainingImage", "reportTrainingIndex", "openapi",
    "metrics", "getModelLabel",
    "predictLabel", "tfServingPredictLabel", "explainLabel", "activationsLabel",
    "trainPage", "createJob", "listJobs", "getJob", "cancelJob", "jobEvents", "listBackbones",
    "feedback", "monitor", "monitorSeries", "monitorPage",
    "reviewQueue", "reviewImage", "review", "reviewPage",
}  # fmt: skip


def operations(document):
    return {
        (path, method): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


def test_the_operation_ids_are_the_published_ones(client):
    document = client.get("/openapi.json").json
    assert {op["operationId"] for op in operations(document).values()} == OPERATION_IDS


def test_a_route_without_an_operation_stops_the_document(make_app):
    app = make_app()

    @app.get("/undocumented")
    def undocumented():
        return {}

    with pytest.raises(UndocumentedRoute, match="GET /undocumented"):
        build_document(app, app.extensions["ktl"].config)
    assert app.test_client().get("/openapi.json").status_code == 500


def test_public_routes_have_no_security_and_the_others_need_a_bearer_key(client):
    document = client.get("/openapi.json").json
    public = {
        ("/healthz", "get"), ("/readyz", "get"), ("/openapi.json", "get"), ("/v2", "get"),
        ("/v2/health/live", "get"), ("/v2/health/ready", "get"), ("/", "get"),
        ("/static/{filename}", "get"), ("/models/{name}/versions/{version}/report", "get"),
        ("/train", "get"), ("/v1/backbones", "get"), ("/models/{name}/monitor", "get"),
        ("/review", "get"),
    }  # fmt: skip
    training_images = {
        ("/v1/models/{name}/versions/{version}/reports/worst/{file}", "get"),
        ("/v1/models/{name}/versions/{version}/reports/worst.json", "get"),
    }
    for key, operation in operations(document).items():
        if key in public:
            assert "security" not in operation and "401" not in operation["responses"], key
        else:
            scheme = "reportBearer" if key in training_images else "bearer"
            training = key[0].startswith("/v1/jobs") or "/review" in key[0]
            scheme = "trainBearer" if training else scheme
            assert operation["security"] == [{scheme: []}, {}], key
            assert "401" in operation["responses"], key
    assert set(document["components"]["securitySchemes"]) == {
        "bearer",
        "reportBearer",
        "trainBearer",
    }


def test_with_keys_configured_anonymous_access_is_no_alternative(make_app):
    app = make_app(api_keys=("p",), train_keys=("t",), training="open")
    document = app.test_client().get("/openapi.json", headers={"Authorization": "Bearer p"}).json
    found = {
        key[0]: operation["security"]
        for key, operation in operations(document).items()
        if "security" in operation
    }
    assert found["/v1/models/{name}/predict"] == [{"bearer": []}]
    assert found["/v1/jobs"] == [{"trainBearer": []}]
    assert all({} not in security for security in found.values())


def test_limits_come_from_the_configuration(make_app):
    document = make_app(max_images_per_request=7).test_client().get("/openapi.json").json
    predict = document["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]
    image = predict["content"]["multipart/form-data"]["schema"]["properties"]["image"]
    assert (image["minItems"], image["maxItems"]) == (1, 7)
    schemas = document["components"]["schemas"]
    assert schemas["TFServingRequest"]["properties"]["instances"]["maxItems"] == 7
    assert schemas["PixelInput"]["properties"]["shape"]["prefixItems"][0]["maximum"] == 7
    assert "x-ktl-limit" not in json.dumps(document)


def test_queries_say_what_the_server_checks(client):
    document = client.get("/openapi.json").json

    def query(path):
        parameters = document["paths"][path]["post"]["parameters"]
        return {p["name"]: p for p in parameters if p["in"] == "query"}

    top_k = query("/v1/models/{name}/predict")["top_k"]
    assert top_k["required"] is False and top_k["schema"] == {"minimum": 1, "type": "integer"}
    explain = query("/v1/models/{name}/explain")
    assert explain["class"]["schema"] == {"minLength": 1, "type": "string"}
    assert explain["format"]["schema"]["enum"] == ["png", "json"]
    layer = query("/v1/models/{name}/activations")["layer"]
    assert layer["required"] is True and layer["schema"]["minLength"] == 1


def test_json_bodies_are_their_models_and_the_name_example_is_a_served_model(client):
    document = client.get("/openapi.json").json
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    content = infer["requestBody"]["content"]
    assert content["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferenceRequest"
    }
    assert (
        "Inference-Header-Content-Length"
        in content["application/octet-stream"]["schema"]["description"]
    )
    headers = [p["name"] for p in infer["parameters"] if p["in"] == "header"]
    assert headers == ["X-Request-Id"]
    [name] = [p for p in infer["parameters"] if p["name"] == "name"]
    assert name["example"] == "tiny"
    tfs = document["paths"]["/v1/models/{name}:predict"]["post"]["requestBody"]["content"]
    assert tfs == {
        "application/json": {"schema": {"$ref": "#/components/schemas/TFServingRequest"}}
    }


# Keywords a schema of the document may use (JSON Schema 2020-12 and OpenAPI 3.1's own).
SCHEMA_KEYWORDS = {
    "$ref", "type", "properties", "required", "items", "prefixItems", "minItems", "maxItems",
    "additionalProperties", "anyOf", "oneOf", "allOf", "enum", "const", "minimum", "maximum",
    "minLength", "maxLength", "pattern", "format", "contentEncoding", "description", "title",
    "default", "examples", "discriminator", "exclusiveMinimum", "exclusiveMaximum",
}  # fmt: skip


def test_every_schema_uses_only_json_schema_keywords(client):
    """Pydantic writes constraints it cannot place (e.g. ``ge`` on a union) verbatim."""
    document = client.get("/openapi.json").json
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            if "type" in node or "$ref" in node or "anyOf" in node:
                found.extend(f"{where}: {key}" for key in set(node) - SCHEMA_KEYWORDS)
            for key, value in node.items():
                if key != "properties":
                    walk(value, f"{where}.{key}")
                else:
                    for name, schema in value.items():
                        walk(schema, f"{where}.properties.{name}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(document["components"]["schemas"], "schemas")
    for (path, method), operation in operations(document).items():
        walk(operation, f"{method} {path}")
    assert found == []
