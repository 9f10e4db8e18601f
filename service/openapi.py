"""The OpenAPI 3.1 document of every route, served at ``/openapi.json``.

Kept next to the routes as a dict; a test checks that its paths and methods
and the app's URL rules are the same set.
"""

from __future__ import annotations

import re

from flask import Blueprint

bp = Blueprint("openapi", __name__)


def openapi_path(rule: str) -> str:
    """A Flask URL rule as an OpenAPI path: ``/m/<segment:name>`` -> ``/m/{name}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


_JSON = "application/json"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict:
    return {"description": description, "content": {_JSON: {"schema": _ref("Error")}}}


def _html(description: str) -> dict:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _ok(description: str, schema: dict) -> dict:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "Model name: 1-64 of a-z, 0-9, '-', '_', starting with a letter or digit",
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "description": "Model version, a positive integer",
    "schema": {"type": "integer", "minimum": 1},
}
_TOP_K = {
    "name": "top_k",
    "in": "query",
    "required": False,
    "description": "Classes in `top` (default KTL_TOP_K, at most the number of labels)",
    "schema": {"type": "integer", "minimum": 1},
}
_AUTH_ERRORS = {"401": _error("API key missing or wrong (only when KTL_API_KEYS is set)")}
_MODEL_ERRORS = {
    **_AUTH_ERRORS,
    "404": _error("Unknown model or version, or an invalid model name"),
    "503": _error("The model or version exists but could not be loaded"),
}
_PREDICT_ERRORS = {
    **_MODEL_ERRORS,
    "400": _error("Not an image, a corrupt image, a missing field, bad JSON or base64, bad top_k"),
    "413": _error("Body over KTL_MAX_UPLOAD_MB, image over KTL_MAX_IMAGE_PIXELS, or too many"),
    "415": _error("A Content-Type this route does not accept"),
    "503": {
        **_error("Server saturated (queue full), or the model could not be loaded"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}
_SECURED = [{"bearer": []}, {}]


def _operation(
    method: str,
    summary: str,
    operation_id: str,
    parameters: list[dict],
    responses: dict,
    body: dict | None = None,
) -> dict:
    """One operation of a route that API keys guard (when KTL_API_KEYS is set)."""
    operation = {
        "summary": summary,
        "operationId": operation_id,
        "parameters": parameters,
        "security": _SECURED,
        **({"requestBody": body} if body is not None else {}),
        "responses": responses,
    }
    return {method: operation}


def _native_predict(summary: str, parameters: list[dict]) -> dict:
    return {
        "post": {
            "summary": summary,
            "operationId": "predict" if len(parameters) == 1 else "predictVersion",
            "parameters": [*parameters, _TOP_K],
            "security": _SECURED,
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["image"],
                            "properties": {
                                "image": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                    "description": "One or more image files (several = a batch)",
                                }
                            },
                        }
                    },
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "200": _ok("Predictions, one per image, in upload order", _ref("Prediction")),
                **_PREDICT_ERRORS,
            },
        }
    }


def _tfserving_predict(summary: str, parameters: list[dict]) -> dict:
    return _operation(
        "post",
        summary,
        "tfServingPredict" if len(parameters) == 1 else "tfServingPredictVersion",
        parameters,
        {"200": _ok("Probabilities in label order", _ref("TFServingResponse")), **_PREDICT_ERRORS},
        {"required": True, "content": {_JSON: {"schema": _ref("TFServingRequest")}}},
    )


def _metadata(summary: str, operation_id: str, parameters: list[dict]) -> dict:
    return _operation(
        "get",
        summary,
        operation_id,
        parameters,
        {"200": _ok("metadata.json of the version", _ref("Metadata")), **_MODEL_ERRORS},
    )


_IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {"image": {"type": "string", "format": "binary"}},
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
_PNG = {"image/png": {"schema": {"type": "string", "format": "binary"}}}


def _explain(summary: str, operation_id: str, parameters: list[dict]) -> dict:
    extra = [
        {
            "name": "class",
            "in": "query",
            "required": False,
            "description": "Class to explain, a label or an index (default: the predicted one)",
            "schema": {"type": "string"},
        },
        {
            "name": "format",
            "in": "query",
            "required": False,
            "description": "png (default): the heatmap over the image; json: the heatmap",
            "schema": {"enum": ["png", "json"]},
        },
    ]
    return {
        "post": {
            "summary": summary,
            "operationId": operation_id,
            "parameters": [*parameters, *extra],
            "security": _SECURED,
            "requestBody": _IMAGE_BODY,
            "responses": {
                "200": {
                    "description": "Grad-CAM heatmap of one image, over it (PNG) or as numbers",
                    "content": {**_PNG, _JSON: {"schema": _ref("Explanation")}},
                },
                **_PREDICT_ERRORS,
                "400": _error("Not one image, an unknown class, or a bad format"),
            },
        }
    }


def _activations(summary: str, operation_id: str, parameters: list[dict]) -> dict:
    layer = {
        "name": "layer",
        "in": "query",
        "required": True,
        "description": "A layer with feature maps; a 400 lists the valid names",
        "schema": {"type": "string"},
    }
    return {
        "post": {
            "summary": summary,
            "operationId": operation_id,
            "parameters": [*parameters, layer],
            "security": _SECURED,
            "requestBody": _IMAGE_BODY,
            "responses": {
                "200": {
                    "description": "One grey tile per feature map (at most 64), each scaled "
                    "to its own range",
                    "content": _PNG,
                },
                **_PREDICT_ERRORS,
                "400": _error("Not one image, or no such layer (the message lists them)"),
            },
        }
    }


def _kserve_error(description: str) -> dict:
    return {"description": description, "content": {_JSON: {"schema": _ref("KServeError")}}}


_KSERVE_MODEL_ERRORS = {
    "401": _kserve_error("API key missing or wrong (only when KTL_API_KEYS is set)"),
    "404": _kserve_error("Unknown model or version, or an invalid model name"),
    "503": _kserve_error("The model or version exists but could not be loaded"),
}


def _kserve_metadata(summary: str, operation_id: str, parameters: list[dict]) -> dict:
    return _operation(
        "get",
        summary,
        operation_id,
        parameters,
        {
            "200": _ok("Open Inference Protocol model metadata", _ref("KServeModelMetadata")),
            **_KSERVE_MODEL_ERRORS,
        },
    )


def _kserve_ready(summary: str, operation_id: str, parameters: list[dict]) -> dict:
    return _operation(
        "get",
        summary,
        operation_id,
        parameters,
        {
            "200": _ok("The model version is loaded and ready", {"type": "object"}),
            **_KSERVE_MODEL_ERRORS,
        },
    )


_BINARY_BODY = {
    "schema": {"type": "string", "format": "binary"},
    "description": "Binary data extension: the JSON request (KServeInferRequest) of "
    "Inference-Header-Content-Length bytes, then each binary input's bytes in order",
}


def _kserve_infer(summary: str, operation_id: str, parameters: list[dict]) -> dict:
    header = {
        "name": "Inference-Header-Content-Length",
        "in": "header",
        "required": False,
        "description": "Binary data extension: length of the JSON part of the body",
        "schema": {"type": "integer", "minimum": 0},
    }
    return {
        "post": {
            "summary": summary,
            "operationId": operation_id,
            "parameters": [*parameters, header],
            "security": _SECURED,
            "requestBody": {
                "required": True,
                "content": {
                    _JSON: {"schema": _ref("KServeInferRequest")},
                    "application/octet-stream": _BINARY_BODY,
                },
            },
            "responses": {
                "200": {
                    "description": "probabilities (FP32 [n, classes]) and labels (BYTES [n]); "
                    "outputs asked with binary_data come after the JSON, whose length is in "
                    "the Inference-Header-Content-Length response header",
                    "content": {
                        _JSON: {"schema": _ref("KServeInferResponse")},
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                    },
                },
                "400": _kserve_error(
                    "Bad tensor (name, datatype, shape, data, base64, binary sizes), not an "
                    "image, a corrupt image, an unknown output"
                ),
                "413": _kserve_error("Body, image or image count over the limits"),
                **_KSERVE_MODEL_ERRORS,
                "503": {
                    **_kserve_error("Server saturated (queue full), or the model did not load"),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                },
            },
        }
    }


_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}

OPENAPI: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "ktl classification service",
        "version": "1",
        "description": "Image classification with models fine-tuned and published by ktl. "
        'Errors are {"error": <message>, "code": <machine code>}.',
    },
    "paths": {
        "/healthz": {
            "get": {
                "summary": "Liveness; never touches a model",
                "operationId": "healthz",
                "responses": {"200": _ok("Alive", {"type": "object"})},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: 200 once at least one model is servable",
                "operationId": "readyz",
                "responses": {
                    "200": _ok("Ready", {"type": "object"}),
                    "503": _error("No model is servable yet"),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "Every model in the store, with unavailable versions and why",
                "operationId": "listModels",
                "security": _SECURED,
                "responses": {"200": _ok("Models", _ref("ModelList")), **_AUTH_ERRORS},
            }
        },
        "/v1/models/{name}": _metadata(
            "Metadata of the model's default version", "getModel", [_NAME]
        ),
        "/v1/models/{name}/versions/{version}": _metadata(
            "Metadata of one version", "getModelVersion", [_NAME, _VERSION]
        ),
        "/v1/models/{name}/predict": _native_predict(
            "Classify images with the default version", [_NAME]
        ),
        "/v1/models/{name}/versions/{version}/predict": _native_predict(
            "Classify images with one version", [_NAME, _VERSION]
        ),
        "/v1/models/{name}:predict": _tfserving_predict(
            "TensorFlow Serving REST predict, default version", [_NAME]
        ),
        "/v1/models/{name}/versions/{version}:predict": _tfserving_predict(
            "TensorFlow Serving REST predict, one version", [_NAME, _VERSION]
        ),
        "/v1/models/{name}/explain": _explain(
            "Grad-CAM: where the default version looks for a class", "explain", [_NAME]
        ),
        "/v1/models/{name}/versions/{version}/explain": _explain(
            "Grad-CAM with one version", "explainVersion", [_NAME, _VERSION]
        ),
        "/v1/models/{name}/activations": _activations(
            "Feature maps of one layer of the default version", "activations", [_NAME]
        ),
        "/v1/models/{name}/versions/{version}/activations": _activations(
            "Feature maps of one layer of one version", "activationsVersion", [_NAME, _VERSION]
        ),
        "/v2": {
            "get": {
                "summary": "Open Inference Protocol (KServe v2): server metadata",
                "operationId": "kserveServerMetadata",
                "responses": {
                    "200": _ok(
                        "name, version, extensions",
                        {
                            "type": "object",
                            "required": ["name", "version", "extensions"],
                            "properties": {
                                "name": {"type": "string"},
                                "version": {"type": "string"},
                                "extensions": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    ),
                },
            }
        },
        "/v2/health/live": {
            "get": {
                "summary": "Open Inference Protocol liveness",
                "operationId": "kserveLive",
                "responses": {
                    "200": _ok("Alive", {"type": "object"}),
                },
            }
        },
        "/v2/health/ready": {
            "get": {
                "summary": "Open Inference Protocol readiness: 200 once a model is servable",
                "operationId": "kserveReady",
                "responses": {
                    "200": _ok("Ready", {"type": "object"}),
                    "503": _kserve_error("No model is servable yet"),
                },
            }
        },
        "/v2/models/{name}": _kserve_metadata(
            "Open Inference Protocol metadata of the default version", "kserveModel", [_NAME]
        ),
        "/v2/models/{name}/versions/{version}": _kserve_metadata(
            "Open Inference Protocol metadata of one version",
            "kserveModelVersion",
            [_NAME, _VERSION],
        ),
        "/v2/models/{name}/ready": _kserve_ready(
            "Open Inference Protocol readiness of the default version", "kserveModelReady", [_NAME]
        ),
        "/v2/models/{name}/versions/{version}/ready": _kserve_ready(
            "Open Inference Protocol readiness of one version",
            "kserveModelVersionReady",
            [_NAME, _VERSION],
        ),
        "/v2/models/{name}/infer": _kserve_infer(
            "Open Inference Protocol infer with the default version", "kserveInfer", [_NAME]
        ),
        "/v2/models/{name}/versions/{version}/infer": _kserve_infer(
            "Open Inference Protocol infer with one version",
            "kserveInferVersion",
            [_NAME, _VERSION],
        ),
        "/": {
            "get": {
                "summary": "Web page: try a model with an image (HTML; data via this API)",
                "operationId": "page",
                "responses": {"200": _html("The page")},
            }
        },
        "/static/{filename}": {
            "get": {
                "summary": "The web pages' scripts and style sheet",
                "operationId": "static",
                "parameters": [
                    {
                        "name": "filename",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "The file"},
                    "404": {"description": "No such file"},
                },
            }
        },
        "/models/{name}/versions/{version}/report": {
            "get": {
                "summary": "Web page: the training report of one version (HTML; data via this API)",
                "operationId": "reportPage",
                "parameters": [_NAME, _VERSION],
                "responses": {"200": _html("The page"), "404": _error("Not a version number")},
            }
        },
        "/v1/models/{name}/versions/{version}/reports/{file}": {
            "get": {
                "summary": "A file of the version's reports/ (curves.png, confusion_matrix.png, "
                "metrics.json, history.csv, worst.json, worst/NN.png)",
                "operationId": "reportFile",
                "parameters": [
                    _NAME,
                    _VERSION,
                    {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "security": _SECURED,
                "responses": {
                    "200": {"description": "The file, with its media type"},
                    "404": _error("Unknown model, version or report file"),
                    **_AUTH_ERRORS,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": _ok("OpenAPI 3.1 document", {"type": "object"})},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of this worker process",
                "operationId": "metrics",
                "security": _SECURED,
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_AUTH_ERRORS,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "One of KTL_API_KEYS; not needed when KTL_API_KEYS is empty",
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "code"],
                "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
            },
            "ModelList": {
                "type": "object",
                "required": ["models"],
                "properties": {
                    "models": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "versions", "default_version", "status"],
                            "properties": {
                                "name": {"type": "string"},
                                "versions": {"type": "array", "items": {"type": "integer"}},
                                "default_version": {"type": ["integer", "null"]},
                                "labels": {
                                    "type": ["array", "null"],
                                    "items": {"type": "string"},
                                },
                                "backbone": {"type": ["string", "null"]},
                                "image_size": {
                                    "type": ["array", "null"],
                                    "items": {"type": "integer"},
                                    "description": "[height, width]",
                                },
                                "status": {"enum": ["available", "unavailable"]},
                                "unavailable_versions": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "version": {"type": "integer"},
                                            "reason": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
            "Metadata": {
                "type": "object",
                "description": "The bundle's metadata.json (format_version 1)",
                "required": ["name", "version", "labels", "image_size"],
                "additionalProperties": True,
            },
            "Prediction": {
                "type": "object",
                "required": ["model", "version", "predictions"],
                "properties": {
                    "model": {"type": "string"},
                    "version": {"type": "integer"},
                    "predictions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "filename": {"type": ["string", "null"]},
                                "top": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "label": {"type": "string"},
                                            "index": {"type": "integer"},
                                            "probability": _PROBABILITY,
                                        },
                                    },
                                },
                                "probabilities": {
                                    "type": "object",
                                    "additionalProperties": _PROBABILITY,
                                    "description": "Every label, in label order; sums to 1",
                                },
                            },
                        },
                    },
                },
            },
            "Explanation": {
                "type": "object",
                "required": ["model", "version", "class", "heatmap"],
                "properties": {
                    "model": {"type": "string"},
                    "version": {"type": "integer"},
                    "class": {
                        "type": "object",
                        "properties": {
                            "label": {"type": "string"},
                            "index": {"type": "integer"},
                        },
                    },
                    "heatmap": {
                        "type": "array",
                        "items": {"type": "array", "items": _PROBABILITY},
                        "description": "Rows of the last feature map, 0..1 (1 at the peak)",
                    },
                },
            },
            "KServeError": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
            },
            "KServeTensorMetadata": {
                "type": "object",
                "required": ["name", "datatype", "shape"],
                "properties": {
                    "name": {"type": "string"},
                    "datatype": {"enum": ["BYTES", "UINT8", "FP32"]},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                },
            },
            "KServeModelMetadata": {
                "type": "object",
                "required": ["name", "versions", "platform", "inputs", "outputs"],
                "properties": {
                    "name": {"type": "string"},
                    "versions": {"type": "array", "items": {"type": "string"}},
                    "platform": {"type": "string"},
                    "inputs": {"type": "array", "items": _ref("KServeTensorMetadata")},
                    "outputs": {"type": "array", "items": _ref("KServeTensorMetadata")},
                    "parameters": {"type": "object"},
                },
            },
            "KServeInferRequest": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {
                        "type": "object",
                        "properties": {"binary_data_output": {"type": "boolean"}},
                    },
                    "inputs": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1,
                        "description": "One input: BYTES [n] encoded images (base64 in JSON, "
                        'as plain strings or {"b64": ...}) or UINT8 [n, height, width, 3] pixels',
                        "items": {
                            "type": "object",
                            "required": ["name", "shape", "datatype"],
                            "properties": {
                                "name": {"type": "string"},
                                "shape": {"type": "array", "items": {"type": "integer"}},
                                "datatype": {"enum": ["BYTES", "UINT8"]},
                                "parameters": {
                                    "type": "object",
                                    "properties": {"binary_data_size": {"type": "integer"}},
                                },
                                "data": {"type": "array"},
                            },
                        },
                    },
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"enum": ["probabilities", "labels"]},
                                "parameters": {
                                    "type": "object",
                                    "properties": {"binary_data": {"type": "boolean"}},
                                },
                            },
                        },
                    },
                },
            },
            "KServeInferResponse": {
                "type": "object",
                "required": ["model_name", "outputs"],
                "properties": {
                    "model_name": {"type": "string"},
                    "model_version": {"type": "string"},
                    "id": {"type": "string"},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "datatype", "shape"],
                            "properties": {
                                "name": {"type": "string"},
                                "datatype": {"type": "string"},
                                "shape": {"type": "array", "items": {"type": "integer"}},
                                "data": {"type": "array"},
                                "parameters": {"type": "object"},
                            },
                        },
                    },
                },
            },
            "TFServingRequest": {
                "type": "object",
                "required": ["instances"],
                "properties": {
                    "instances": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "oneOf": [
                                _ref("Base64Image"),
                                {
                                    "type": "object",
                                    "required": ["image_bytes"],
                                    "properties": {"image_bytes": _ref("Base64Image")},
                                },
                            ]
                        },
                    }
                },
            },
            "Base64Image": {
                "type": "object",
                "required": ["b64"],
                "properties": {"b64": {"type": "string", "contentEncoding": "base64"}},
            },
            "TFServingResponse": {
                "type": "object",
                "required": ["predictions"],
                "properties": {
                    "predictions": {
                        "type": "array",
                        "items": {"type": "array", "items": _PROBABILITY},
                    }
                },
            },
        },
    },
}


@bp.get("/openapi.json")
def openapi() -> dict:
    return OPENAPI
