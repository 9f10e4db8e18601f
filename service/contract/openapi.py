"""The OpenAPI 3.1 document, generated: every URL rule of the app with the
contract its view records (``@operation``), component schemas from the pydantic
models, limits from the configuration. A route without ``@operation`` stops the
build, so the document lists every route and nothing else."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from flask import Blueprint, Flask, current_app
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema
from werkzeug.routing import Rule

from service.config import ServiceConfig
from service.contract.operation import Operation, Reply, operation, operation_of
from service.contract.paths import openapi_path, path_arguments
from service.contract.request_ids import REQUEST_ID_DOC, REQUEST_ID_PARAMETER
from service.protocols.bodies import LIMIT_MARKER
from service.state import service_state

bp = Blueprint("openapi", __name__)

Mode = Literal["validation", "serialization"]
_REF = "#/components/schemas/{model}"
_IGNORED_METHODS = {"HEAD", "OPTIONS"}
_JSON = "application/json"
_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "name": {
        "description": "Model name: 1-64 of a-z, 0-9, '-', '_', starting with a letter or digit",
        "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
    },
    "version": {
        "description": "Model version, a positive integer",
        "schema": {"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
    },
    "label": {
        "description": "A label of the model's versions: stable, canary, or any other set "
        "with `ktl label`",
        "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$"},
    },
}


class ContractSchema(GenerateJsonSchema):
    """Pydantic's JSON schemas, less what would mislead a client: a default of null
    on a field that refuses null (``service.protocols.bodies.Maybe``) and titles repeating names."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        json_schema = super().default_schema(schema)
        if json_schema.get("default", "") is None:
            del json_schema["default"]
        return json_schema

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


class UndocumentedRoute(RuntimeError):
    """A URL rule whose view has no ``@operation``."""


def documented_routes(app: Flask) -> Iterator[tuple[Rule, str, Operation]]:
    """Every (rule, method) of ``app`` with its view's contract; raises for a route
    without one."""
    missing = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        record = operation_of(app.view_functions.get(rule.endpoint))
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            if record is None:
                missing.append(f"{method} {rule.rule} ({rule.endpoint})")
            else:
                yield rule, method, record
    if missing:
        raise UndocumentedRoute(f"Routes without @operation: {', '.join(missing)}")


def build_document(
    app: Flask, config: ServiceConfig, examples: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The document of ``app``; ``examples``: a value for path parameters, by name."""
    routes = list(documented_routes(app))
    # A view served with and without a version in its path: two operations, two ids.
    unversioned = {rule.endpoint for rule, _, _ in routes if "version" not in rule.arguments}
    models = _models(record for _, _, record in routes)
    schemas, definitions = models_json_schema(
        models, ref_template=_REF, schema_generator=ContractSchema
    )
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, record in routes:
        versioned = "version" in rule.arguments and rule.endpoint in unversioned
        operation_id = record.versioned_id if versioned else record.operation_id
        if "label" in rule.arguments:
            operation_id = record.labelled_id
        paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = _operation(
            rule, record, operation_id, schemas, examples or {}, config
        )
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "ktl classification service",
            "version": "1",
            "description": "Image classification with models fine-tuned and published by ktl. "
            'Errors are {"error": <message>, "code": <machine code>}.',
        },
        "paths": paths,
        "components": {
            "securitySchemes": _security_schemes(record for _, _, record in routes),
            "schemas": definitions.get("$defs", {}),
        },
    }
    return _with_limits(document, config)


SchemaRefs = Mapping[Any, JsonSchemaValue]  # by (model, mode), as models_json_schema gives


def _models(records: Iterator[Operation]) -> list[tuple[type[BaseModel], Mode]]:
    """Every model the contract names: bodies read (validation), bodies written (serialization)."""
    models: dict[tuple[type[BaseModel], Mode], None] = {}
    for record in records:
        if record.body is not None and record.body.model is not None:
            models[(record.body.model, "validation")] = None
        for reply in [*record.responses.values(), Reply("", record.error_body)]:
            if reply.model is not None:
                models[(reply.model, "serialization")] = None
    return list(models)


def _operation(
    rule: Rule,
    record: Operation,
    operation_id: str,
    schemas: SchemaRefs,
    examples: Mapping[str, Any],
    config: ServiceConfig,
) -> dict[str, Any]:
    described: dict[str, Any] = {"summary": record.summary, "operationId": operation_id}
    parameters = [*_path_parameters(rule, record, examples), *_query_parameters(record)]
    described["parameters"] = [*parameters, REQUEST_ID_PARAMETER]
    if not record.public:
        # {}, anonymous access, is an alternative only while none of its keys is configured.
        keyed: list[dict[str, list[str]]] = [{record.keys.scheme: []}]
        described["security"] = keyed if record.keys.keys(config) else [*keyed, {}]
    if record.body is not None:
        described["requestBody"] = _request_body(record, schemas)
    described["responses"] = {
        str(status): _response(reply, schemas) for status, reply in sorted(_replies(record).items())
    }
    return described


def _path_parameters(
    rule: Rule, record: Operation, examples: Mapping[str, Any]
) -> list[dict[str, Any]]:
    parameters = []
    for name in path_arguments(rule.rule):
        documented = record.parameters.get(name) or _PATH_PARAMETERS.get(name)
        parameter = {
            "name": name,
            "in": "path",
            "required": True,
            **(documented or {"schema": {"type": "string"}}),
        }
        if name in examples:
            parameter["example"] = examples[name]
        parameters.append(parameter)
    return parameters


def _query_parameters(record: Operation) -> list[dict[str, Any]]:
    if record.query is None:
        return []
    schema = record.query.model_json_schema(by_alias=True, schema_generator=ContractSchema)
    required = set(schema.get("required", []))
    parameters = []
    for name, field in schema.get("properties", {}).items():
        field = dict(field)
        description = field.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": field}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _request_body(record: Operation, schemas: SchemaRefs) -> dict[str, Any]:
    assert record.body is not None
    content = {}
    if record.body.model is not None:
        content[_JSON] = {"schema": schemas[(record.body.model, "validation")]}
    content.update(record.body.content)
    body: dict[str, Any] = {"required": True, "content": content}
    if record.body.description:
        body["description"] = record.body.description
    return body


def _replies(record: Operation) -> dict[int, Reply]:
    """The route's own responses, and those its contract implies."""
    implied = {}
    if not record.public:
        implied[401] = Reply(
            f"API key missing or wrong (only when {record.keys.variable} is set)",
            record.error_body,
        )
    if record.query is not None:
        implied[400] = Reply(
            "A query parameter is not valid; the message names it", record.error_body
        )
    return {**implied, **record.responses}


def _response(reply: Reply, schemas: SchemaRefs) -> dict[str, Any]:
    content = dict(reply.content)
    if reply.model is not None:
        content[_JSON] = {"schema": schemas[(reply.model, "serialization")]}
    response: dict[str, Any] = {"description": reply.description}
    if content:
        response["content"] = content
    response["headers"] = {**reply.headers, **REQUEST_ID_DOC}
    return response


def _security_schemes(records: Iterator[Operation]) -> dict[str, Any]:
    return {
        record.keys.scheme: {
            "type": "http",
            "scheme": "bearer",
            "description": f"One of {record.keys.variable}; not needed when it is empty",
        }
        for record in records
        if not record.public
    }


def _with_limits(node: Any, config: ServiceConfig) -> Any:
    """The document with each limit marker replaced by the configured value."""
    if isinstance(node, list):
        return [_with_limits(item, config) for item in node]
    if not isinstance(node, dict):
        return node
    limits = node.get(LIMIT_MARKER, {})
    written = {
        key: _with_limits(value, config) for key, value in node.items() if key != LIMIT_MARKER
    }
    written.update({keyword: getattr(config, setting) for keyword, setting in limits.items()})
    return written


@bp.get("/openapi.json")
@operation(
    "openapi",
    summary="This document",
    public=True,
    responses={200: Reply("OpenAPI 3.1 document", content={_JSON: {"schema": {"type": "object"}}})},
)
def openapi() -> dict[str, Any]:
    state = service_state()
    served = sorted(
        (name, model.default_version)
        for name, model in state.registry.snapshot.models.items()
        if model.default_version is not None
    )
    # A model this server has, so a client trying the document reaches a real one.
    examples = {"name": served[0][0], "version": served[0][1]} if served else {}
    return build_document(current_app, state.config, examples)
