from __future__ import annotations

import pytest

from service.openapi import openapi_path

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
