"""The Open Inference Protocol (KServe v2, also Triton's HTTP API) beside the native
routes: health, server and model metadata, readiness, and infer.

Inputs (exactly one per request, told apart by datatype, any name):
- ``BYTES`` ``[n]``: encoded images, one element per image (decoded by ``load_image``);
- ``UINT8`` ``[n, height, width, 3]``: RGB pixels at the bundle's size.

Outputs: ``probabilities`` (``FP32 [n, classes]``, label order), ``labels``
(``BYTES [n]``, the top label per image) and ``decision`` (``BYTES [n]``, the top
label where its probability reaches the version's threshold, else the empty string:
"not sure / none of these"; for a multi-label version, its chosen labels joined by
``;``, empty for none) and ``id`` (``BYTES [n]``, each prediction's id, which feedback
names); ``outputs`` in the request picks them.

Both the JSON form and the binary data extension (what ``tritonclient`` sends by
default) are read (``service.protocols.kserve_tensors``); output labels in JSON are plain
UTF-8 strings, as Triton answers them.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request

from service.contract.operation import Body, Reply, operation
from service.contract.replies import BINARY, error, model_errors
from service.protocols import kserve_core
from service.protocols.bodies import json_body
from service.protocols.kserve_bodies import (
    InferenceRequest,
    InferenceResponse,
    KServeError,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
)
from service.protocols.kserve_tensors import HEADER_LENGTH, read_request
from service.serving.routing import VERSION_HEADER_DOC

bp = Blueprint("kserve", __name__)

# The protocol's model version is a string: here a number, or a label of the model.
VERSION_OR_LABEL = {
    "version": {
        "description": "A version (1, 2, ...) or a label of the model (stable, canary, ...)",
        "schema": {"type": "string", "pattern": "^(?:[1-9][0-9]{0,17}|[a-z][a-z0-9_-]{0,63})$"},
    }
}


@bp.get("/v2")
@operation(
    "kserveServerMetadata",
    summary="Open Inference Protocol (KServe v2): server metadata",
    public=True,
    responses={200: Reply("name, version, extensions", ServerMetadata)},
)
def server_metadata() -> dict[str, Any]:
    return json_body(kserve_core.server_metadata(extensions=["binary_tensor_data"]))


@bp.get("/v2/health/live")
@operation(
    "kserveLive",
    summary="Open Inference Protocol liveness",
    public=True,
    responses={200: Reply("Alive", ServerLive)},
)
def live() -> dict[str, Any]:
    return json_body(ServerLive(live=True))


@bp.get("/v2/health/ready")
@operation(
    "kserveReady",
    summary="Open Inference Protocol readiness: 200 once a model is servable",
    public=True,
    responses={
        200: Reply("Ready", ServerReady),
        503: error("No model is servable yet", KServeError),
    },
)
def ready() -> dict[str, Any]:
    kserve_core.check_server_ready()
    return json_body(ServerReady(ready=True))


@bp.get("/v2/models/<segment:name>")
@bp.get("/v2/models/<segment:name>/versions/<segment:version>")
@operation(
    "kserveModel",
    summary="Open Inference Protocol metadata of a version (default: the default version; "
    "a number or a label)",
    parameters=VERSION_OR_LABEL,
    error_body=KServeError,
    responses={
        200: Reply("The model's inputs and outputs", ModelMetadata),
        **model_errors(KServeError),
    },
)
def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
    return json_body(kserve_core.model_metadata(name, version))


@bp.get("/v2/models/<segment:name>/ready")
@bp.get("/v2/models/<segment:name>/versions/<segment:version>/ready")
@operation(
    "kserveModelReady",
    versioned_id="kserveModelVersionReady",
    summary="Open Inference Protocol readiness of a version (default: the default version; "
    "a number or a label)",
    parameters=VERSION_OR_LABEL,
    error_body=KServeError,
    responses={
        200: Reply("The version is loaded and ready", ModelReady),
        **model_errors(KServeError),
    },
)
def model_ready(name: str, version: str | None = None) -> dict[str, Any]:
    return json_body(kserve_core.model_ready(name, version))


_BINARY_FORM = (
    "The binary data extension: the JSON inference request (as application/json "
    f"describes it) of {HEADER_LENGTH} bytes (header; without it, the whole body), then "
    "the bytes of each input with parameters.binary_data_size, in input order: UINT8 "
    "pixels as they are, BYTES elements each as a 4-byte little-endian length and the "
    "element. Parts that do not add up are a 400 with code invalid_binary_data."
)


@bp.post("/v2/models/<segment:name>/infer")
@bp.post("/v2/models/<segment:name>/versions/<segment:version>/infer")
@operation(
    "kserveInfer",
    summary="Open Inference Protocol infer: the default version (or the canary, for its "
    "share), or the version in the path, a number or a label (stable, canary, ...)",
    parameters=VERSION_OR_LABEL,
    body=Body(
        InferenceRequest,
        content={"application/octet-stream": {"schema": {**BINARY, "description": _BINARY_FORM}}},
    ),
    error_body=KServeError,
    responses={
        200: Reply(
            "probabilities (FP32 [n, classes]), labels (BYTES [n]) and decision (BYTES [n]: "
            "the label, or an empty string where the top probability is under the version's "
            "threshold: not sure) and id (BYTES [n]: each prediction's id); outputs asked "
            "for as binary data come after the JSON, "
            f"whose length is in the {HEADER_LENGTH} header",
            InferenceResponse,
            content={"application/octet-stream": {"schema": BINARY}},
            headers={
                HEADER_LENGTH: {"schema": {"type": "integer", "minimum": 0}},
                **VERSION_HEADER_DOC,
            },
        ),
        400: error(
            "A bad tensor (name, datatype, shape, data, base64, binary sizes), not an image, "
            "a corrupt image, an unknown output",
            KServeError,
        ),
        413: error(
            "Body over KTL_MAX_UPLOAD_MB, an image over KTL_MAX_IMAGE_PIXELS, or more images "
            "than KTL_MAX_IMAGES_PER_REQUEST",
            KServeError,
        ),
        **model_errors(KServeError),
    },
)
def infer(name: str, version: str | None = None) -> Response:
    inferred = kserve_core.infer(name, version, lambda: read_request(request))
    body = InferenceResponse(
        model_name=inferred.model_name,
        model_version=inferred.model_version,
        id=inferred.id,
        outputs=[output.tensor for output in inferred.outputs],
    )
    text = json.dumps(json_body(body, exclude_none=True), separators=(",", ":")).encode()
    blobs = [output.blob for output in inferred.outputs if output.blob is not None]
    if not blobs:
        return Response(text, mimetype="application/json")
    response = Response(text + b"".join(blobs), mimetype="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(len(text))
    return response
