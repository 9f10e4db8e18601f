"""The Open Inference Protocol (KServe v2, also Triton's HTTP API) beside the native
routes: health, server and model metadata, readiness, and infer.

Inputs (exactly one per request, told apart by datatype, any name):
- ``BYTES`` ``[n]``: encoded images, one element per image (decoded by ``load_image``);
- ``UINT8`` ``[n, height, width, 3]``: RGB pixels at the bundle's size.

Outputs: ``probabilities`` (``FP32 [n, classes]``, label order), ``labels``
(``BYTES [n]``, the top label per image) and ``decision`` (``BYTES [n]``, the top
label where its probability reaches the version's threshold, else the empty string:
"not sure / none of these") and ``id`` (``BYTES [n]``, each prediction's id, which
feedback names); ``outputs`` in the request picks them.

Both the JSON form and the binary data extension (what ``tritonclient`` sends by
default) are read (``service.kserve_tensors``); output labels in JSON are plain
UTF-8 strings, as Triton answers them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
from flask import Blueprint, Response, request

from models.decision import decided_labels, threshold_of
from models.ids import new_id
from service.bodies import json_body
from service.capture import observe_batch
from service.errors import Unavailable
from service.kserve_bodies import (
    IMAGE_INPUT,
    OUTPUTS,
    PIXEL_INPUT,
    InferenceRequest,
    InferenceResponse,
    KServeError,
    ModelMetadata,
    ModelParameters,
    ModelReady,
    PixelInput,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TensorMetadata,
)
from service.kserve_tensors import (
    HEADER_LENGTH,
    images_of,
    labels_output,
    pixels_of,
    probabilities_output,
    read_request,
)
from service.operation import Body, Reply, operation
from service.predictor import Predictor
from service.replies import BINARY, error, model_errors
from service.routing import VERSION_HEADER_DOC, resolve_version_or_label
from service.state import service_state

bp = Blueprint("kserve", __name__)

PLATFORM = "tensorflow_keras"
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
    try:
        ktl_version = package_version("ktl")
    except PackageNotFoundError:
        ktl_version = "unknown"
    body = ServerMetadata(name="ktl", version=ktl_version, extensions=["binary_tensor_data"])
    return json_body(body)


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
    if not service_state().registry.snapshot.ready:
        raise Unavailable("No model is servable yet; GET /v1/models shows why")
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
    predictor = resolve_version_or_label(name, version)
    state = service_state().registry.snapshot.models.get(name)
    versions = state.versions if state is not None else (predictor.bundle.version,)
    height, width = predictor.bundle.image_size
    classes = len(predictor.bundle.labels)
    body = ModelMetadata(
        name=name,
        versions=[str(v) for v in versions],
        platform=PLATFORM,
        inputs=[
            TensorMetadata(name=IMAGE_INPUT, datatype="BYTES", shape=[-1]),
            TensorMetadata(name=PIXEL_INPUT, datatype="UINT8", shape=[-1, height, width, 3]),
        ],
        outputs=[
            TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, classes]),
            TensorMetadata(name="labels", datatype="BYTES", shape=[-1]),
            TensorMetadata(name="decision", datatype="BYTES", shape=[-1]),
            TensorMetadata(name="id", datatype="BYTES", shape=[-1]),
        ],
        parameters=ModelParameters(
            labels=predictor.bundle.labels, version=predictor.bundle.version
        ),
    )
    return json_body(body)


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
    predictor = resolve_version_or_label(name, version)
    return json_body(ModelReady(name=name, version=str(predictor.bundle.version), ready=True))


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
    predictor = resolve_version_or_label(name, version, split=True)
    inference, binary = read_request(request)
    probabilities, images = _probabilities(predictor, inference, binary)
    bundle = predictor.bundle
    labels = [bundle.labels[i] for i in np.argmax(probabilities, axis=1)]
    threshold = threshold_of(bundle.metadata.decision)
    decided = [label or "" for label in decided_labels(bundle.labels, probabilities, threshold)]
    texts = {"labels": labels, "decision": decided, "id": [new_id() for _ in labels]}
    observe_batch(predictor, images, probabilities, texts["id"], threshold)
    outputs = [
        probabilities_output(probabilities, as_binary)
        if output == "probabilities"
        else labels_output(texts[output], as_binary, output)
        for output, as_binary in _requested_outputs(inference)
    ]
    body = InferenceResponse(
        model_name=name,
        model_version=str(predictor.bundle.version),
        id=inference.id,
        outputs=[output.tensor for output in outputs],
    )
    text = json.dumps(json_body(body, exclude_none=True), separators=(",", ":")).encode()
    blobs = [output.blob for output in outputs if output.blob is not None]
    if not blobs:
        return Response(text, mimetype="application/json")
    response = Response(text + b"".join(blobs), mimetype="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(len(text))
    return response


def _probabilities(
    predictor: Predictor, inference: InferenceRequest, binary: memoryview
) -> tuple[np.ndarray, Sequence[bytes | np.ndarray]]:
    """The probabilities, and the images as sent (encoded bytes, or pixel arrays)."""
    tensor = inference.input
    if isinstance(tensor, PixelInput):
        pixels = pixels_of(tensor, binary, predictor.bundle.image_size)
        return predictor.infer(pixels), list(pixels)
    images = images_of(tensor, binary)
    return predictor.predict(images), [image.data for image in images]


def _requested_outputs(inference: InferenceRequest) -> list[tuple[str, bool]]:
    """``(output, as binary data)`` in the order asked for; default: every output."""
    parameters = inference.parameters
    default = bool(parameters is not None and parameters.binary_data_output)
    if inference.outputs is None:
        return [(output, default) for output in OUTPUTS]
    wanted = []
    for output in inference.outputs:
        options = output.parameters
        as_binary = (
            default if options is None or options.binary_data is None else options.binary_data
        )
        wanted.append((output.name, as_binary))
    return wanted
