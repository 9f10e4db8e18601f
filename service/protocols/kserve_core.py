"""The Open Inference Protocol with no transport in it: what the REST routes
(``service.protocols.kserve``) and the gRPC service (``service.oip_grpc``) both answer, from
one resolution of the model and version (a number or a label; the canary takes its
share of inference with neither), one decoding of the input tensor and one
decision rule. Each transport only reads its request into an ``InferenceRequest``
and writes the ``Inferred`` outputs in its own form.

Runs inside a Flask app context (``service_state``); errors are ``KtlError``\\ s,
which each transport words in its own way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import numpy as np

from models.decision import SEPARATOR, threshold_of
from models.ids import new_id
from models.predictions import served_decisions
from service.contract.errors import Unavailable
from service.monitoring.capture import observe_batch
from service.protocols.kserve_bodies import (
    IMAGE_INPUT,
    OUTPUTS,
    PIXEL_INPUT,
    InferenceRequest,
    ModelMetadata,
    ModelParameters,
    ModelReady,
    PixelInput,
    ServerMetadata,
    TensorMetadata,
)
from service.protocols.kserve_tensors import (
    Output,
    images_of,
    labels_output,
    pixels_of,
    probabilities_output,
)
from service.serving.predictor import Predictor
from service.serving.routing import resolve_version_or_label
from service.state import service_state

PLATFORM = "tensorflow_keras"


def server_metadata(extensions: list[str]) -> ServerMetadata:
    try:
        ktl_version = package_version("ktl")
    except PackageNotFoundError:
        ktl_version = "unknown"
    return ServerMetadata(name="ktl", version=ktl_version, extensions=extensions)


def check_server_ready() -> None:
    """Pass once a model is servable; ``Unavailable`` (503) before."""
    if not service_state().registry.snapshot.ready:
        raise Unavailable("No model is servable yet; GET /v1/models shows why")


def model_metadata(name: str, version: str | None = None) -> ModelMetadata:
    predictor = resolve_version_or_label(name, version)
    state = service_state().registry.snapshot.models.get(name)
    versions = state.versions if state is not None else (predictor.bundle.version,)
    height, width = predictor.bundle.image_size
    classes = len(predictor.bundle.labels)
    return ModelMetadata(
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


def model_ready(name: str, version: str | None = None) -> ModelReady:
    predictor = resolve_version_or_label(name, version)
    return ModelReady(name=name, version=str(predictor.bundle.version), ready=True)


@dataclass(frozen=True)
class Inferred:
    """The answer to one inference request: the version that gave it, and each output
    asked for, in order, in both forms (``Output.tensor`` as JSON data unless binary,
    ``Output.blob``: the protocol's raw bytes when binary)."""

    model_name: str
    model_version: str
    id: str | None
    outputs: list[Output]


def infer(
    name: str,
    version: str | None,
    read: Callable[[], tuple[InferenceRequest, memoryview]],
    *,
    all_binary: bool | None = None,
) -> Inferred:
    """Resolve the version that answers (the canary may take it), then ``read`` the
    request: the inference request and its input's bytes (the binary data extension,
    or gRPC's raw contents), and run it. ``all_binary`` None: each output as binary
    data where the request asks (REST); True or False: every output in that form
    (gRPC's raw or typed contents)."""
    predictor = resolve_version_or_label(name, version, split=True)
    inference, binary = read()
    probabilities, images = _probabilities(predictor, inference, binary)
    bundle = predictor.bundle
    labels = [bundle.labels[i] for i in np.argmax(probabilities, axis=1)]
    decided = [  # a multi-label version's set, joined as its labels output is
        SEPARATOR.join(d) if isinstance(d, list) else d or ""
        for d in served_decisions(bundle, probabilities)
    ]
    texts = {"labels": labels, "decision": decided, "id": [new_id() for _ in labels]}
    threshold = threshold_of(bundle.metadata.decision)
    observe_batch(predictor, images, probabilities, texts["id"], threshold)
    outputs = [
        probabilities_output(probabilities, as_binary)
        if output == "probabilities"
        else labels_output(texts[output], as_binary, output)
        for output, as_binary in _requested_outputs(inference, all_binary)
    ]
    return Inferred(name, str(bundle.version), inference.id, outputs)


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


def _requested_outputs(
    inference: InferenceRequest, all_binary: bool | None
) -> list[tuple[str, bool]]:
    """``(output, as binary data)`` in the order asked for; default: every output."""
    if all_binary is not None:
        names = OUTPUTS if inference.outputs is None else [o.name for o in inference.outputs]
        return [(name, all_binary) for name in names]
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
