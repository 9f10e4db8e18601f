"""The Open Inference Protocol (KServe v2, also Triton's HTTP API) beside the native
routes: health, model metadata and readiness, and infer.

Inputs (exactly one per request, told apart by datatype, any name):
- ``BYTES`` ``[n]``: encoded images, one element per image (decoded by ``load_image``);
- ``UINT8`` ``[n, height, width, 3]``: RGB pixels at the bundle's size.

Outputs: ``probabilities`` (``FP32 [n, classes]``, label order) and ``labels``
(``BYTES [n]``, the top label per image); ``outputs`` in the request picks them.

Both the JSON form and the binary data extension (what ``tritonclient`` sends by
default) are read: with an ``Inference-Header-Content-Length`` header, that many
bytes of JSON come first and each input with ``parameters.binary_data_size`` takes
its bytes from what follows, in order (BYTES elements as 4-byte little-endian
lengths, each followed by the element). In pure JSON, BYTES elements are base64
(``{"b64": "..."}`` or a plain base64 string), as the KServe spec asks; output
labels in JSON are plain UTF-8 strings, as Triton answers them.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import numpy as np
from flask import Blueprint, Response, request

from service.api import bound_unsized_body, check_image_count, parse_version
from service.auth import require_api_key
from service.errors import BadRequest, Unavailable
from service.predictor import ImageUpload, Predictor
from service.state import service_state

bp = Blueprint("kserve", __name__)

# Probes stay open like /healthz and /readyz; models and inference need the key.
_OPEN = {"kserve.server_metadata", "kserve.live", "kserve.ready"}


@bp.before_request
def _authenticate() -> None:
    if request.endpoint not in _OPEN:
        require_api_key()


bp.before_request(bound_unsized_body)

HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "tensorflow_keras"
IMAGE_INPUT = "image_bytes"
PIXEL_INPUT = "pixels"
OUTPUTS = ("probabilities", "labels")


@bp.get("/v2")
def server_metadata() -> dict:
    try:
        ktl_version = package_version("ktl")
    except PackageNotFoundError:
        ktl_version = "unknown"
    return {"name": "ktl", "version": ktl_version, "extensions": ["binary_tensor_data"]}


@bp.get("/v2/health/live")
def live() -> dict:
    return {"live": True}


@bp.get("/v2/health/ready")
def ready() -> dict:
    if not service_state().registry.snapshot.ready:
        raise Unavailable("No model is servable yet; GET /v1/models shows why")
    return {"ready": True}


@bp.get("/v2/models/<segment:name>")
@bp.get("/v2/models/<segment:name>/versions/<segment:version>")
def model_metadata(name: str, version: str | None = None) -> dict:
    predictor = service_state().registry.get(name, parse_version(version))
    state = service_state().registry.snapshot.models.get(name)
    versions = state.versions if state is not None else (predictor.bundle.version,)
    height, width = predictor.bundle.image_size
    classes = len(predictor.bundle.labels)
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": [
            {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": PIXEL_INPUT, "datatype": "UINT8", "shape": [-1, height, width, 3]},
        ],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
            {"name": "labels", "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {"labels": predictor.bundle.labels, "version": predictor.bundle.version},
    }


@bp.get("/v2/models/<segment:name>/ready")
@bp.get("/v2/models/<segment:name>/versions/<segment:version>/ready")
def model_ready(name: str, version: str | None = None) -> dict:
    predictor = service_state().registry.get(name, parse_version(version))
    return {"name": name, "version": str(predictor.bundle.version), "ready": True}


@bp.post("/v2/models/<segment:name>/infer")
@bp.post("/v2/models/<segment:name>/versions/<segment:version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    predictor = service_state().registry.get(name, parse_version(version))
    header, binary = _split_body()
    tensor = _one_input(header)
    wanted = _requested_outputs(header)
    probabilities = _run(predictor, tensor, binary)
    labels = predictor.bundle.labels
    values = {
        "probabilities": probabilities.astype(np.float32),
        "labels": [labels[i] for i in np.argmax(probabilities, axis=1)],
    }
    body = {"model_name": name, "model_version": str(predictor.bundle.version)}
    if "id" in header:
        body["id"] = header["id"]
    outputs, blobs = [], []
    for output, as_binary in wanted:
        described, blob = _output(output, values[output], as_binary)
        outputs.append(described)
        if blob is not None:
            blobs.append(blob)
    body["outputs"] = outputs
    text = json.dumps(body, separators=(",", ":")).encode()
    if not blobs:
        return Response(text, mimetype="application/json")
    response = Response(text + b"".join(blobs), mimetype="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(len(text))
    return response


# --- request parsing ------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: object
    binary_size: int | None


def _split_body() -> tuple[dict, memoryview]:
    raw = request.get_data(cache=False)
    length_text = request.headers.get(HEADER_LENGTH)
    if length_text is None:
        length = len(raw)
    else:
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if not 0 <= length <= len(raw):
            raise BadRequest(
                f"{HEADER_LENGTH} is {length_text[:20]!r}; it must be the length of the JSON "
                f"header, 0 to {len(raw)} bytes here"
            )
    try:
        header = json.loads(raw[:length])
    except (ValueError, RecursionError) as exc:
        raise BadRequest(
            f"The inference request is not valid JSON ({exc}); send "
            '{"inputs": [{"name": ..., "shape": [...], "datatype": ..., "data": [...]}]}'
        ) from None
    if not isinstance(header, dict):
        raise BadRequest("The inference request must be a JSON object with 'inputs'")
    return header, memoryview(raw)[length:]


def _one_input(header: dict) -> _Input:
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        count = len(inputs) if isinstance(inputs, list) else "no"
        raise BadRequest(
            f"Send exactly one input ({count} given): {IMAGE_INPUT!r} (BYTES [n], encoded "
            f"images) or {PIXEL_INPUT!r} (UINT8 [n, height, width, 3])"
        )
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise BadRequest("inputs[0] must be an object with name, shape, datatype and data")
    name = tensor.get("name")
    datatype = tensor.get("datatype")
    shape = tensor.get("shape")
    if not isinstance(name, str):
        raise BadRequest("inputs[0] needs a 'name'")
    if datatype not in ("BYTES", "UINT8"):
        raise BadRequest(
            f"Input {name!r} has datatype {str(datatype)[:20]!r}; send BYTES (encoded images) "
            "or UINT8 (pixels)"
        )
    if not (
        isinstance(shape, list)
        and shape
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise BadRequest(f"Input {name!r} needs a 'shape', a list of whole numbers 0 or more")
    parameters = tensor.get("parameters") or {}
    binary_size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if binary_size is not None and (
        not isinstance(binary_size, int) or isinstance(binary_size, bool) or binary_size < 0
    ):
        raise BadRequest(f"Input {name!r}: binary_data_size must be a whole number")
    if binary_size is None and "data" not in tensor:
        raise BadRequest(f"Input {name!r} has no 'data' (and no binary_data_size)")
    return _Input(name, datatype, tuple(shape), tensor.get("data"), binary_size)


def _requested_outputs(header: dict) -> list[tuple[str, bool]]:
    parameters = header.get("parameters") or {}
    default_binary = bool(isinstance(parameters, dict) and parameters.get("binary_data_output"))
    requested = header.get("outputs")
    if requested is None:
        return [(name, default_binary) for name in OUTPUTS]
    if not isinstance(requested, list):
        raise BadRequest("'outputs' must be a list of {\"name\": ...}")
    wanted = []
    for entry in requested:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in OUTPUTS:
            raise BadRequest(
                f"Unknown output {str(name)[:40]!r}; this model has outputs {list(OUTPUTS)}"
            )
        options = entry.get("parameters") or {}
        as_binary = (
            options.get("binary_data", default_binary) if isinstance(options, dict) else False
        )
        wanted.append((name, bool(as_binary)))
    return wanted


def _run(predictor: Predictor, tensor: _Input, binary: memoryview) -> np.ndarray:
    count = int(np.prod(tensor.shape))
    if tensor.binary_size is not None:
        if tensor.binary_size != len(binary):
            raise BadRequest(
                f"Input {tensor.name!r} declares binary_data_size {tensor.binary_size} but "
                f"{len(binary)} bytes follow the JSON header ({HEADER_LENGTH})"
            )
    if tensor.datatype == "BYTES":
        images = (
            _bytes_from_binary(tensor, binary, count)
            if tensor.binary_size is not None
            else _bytes_from_json(tensor, count)
        )
        if not images:
            raise BadRequest(f"Input {tensor.name!r} holds no image")
        check_image_count(len(images))
        return predictor.predict(images)
    return predictor.infer(_pixels(predictor, tensor, binary, count))


def _bytes_from_binary(tensor: _Input, binary: memoryview, count: int) -> list[ImageUpload]:
    images, offset = [], 0
    while offset < len(binary):
        if offset + 4 > len(binary):
            raise BadRequest(f"Input {tensor.name!r}: binary BYTES data ends inside a length")
        (size,) = struct.unpack_from("<I", binary, offset)
        offset += 4
        if offset + size > len(binary):
            raise BadRequest(
                f"Input {tensor.name!r}: element {len(images)} claims {size} bytes; "
                f"only {len(binary) - offset} follow"
            )
        images.append(_upload(tensor, len(images), bytes(binary[offset : offset + size])))
        offset += size
    if len(images) != count:
        raise BadRequest(
            f"Input {tensor.name!r} has shape {list(tensor.shape)} ({count} elements) but its "
            f"binary data holds {len(images)}"
        )
    return images


def _bytes_from_json(tensor: _Input, count: int) -> list[ImageUpload]:
    elements = _flatten(tensor.data)
    if len(elements) != count:
        raise BadRequest(
            f"Input {tensor.name!r} has shape {list(tensor.shape)} ({count} elements) but "
            f"'data' holds {len(elements)}"
        )
    images = []
    for index, element in enumerate(elements):
        encoded = element.get("b64") if isinstance(element, dict) else element
        if not isinstance(encoded, str):
            raise BadRequest(f'{tensor.name}[{index}] must be base64 text or {{"b64": "<base64>"}}')
        try:
            data = base64.b64decode("".join(encoded.split()), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(
                f"{tensor.name}[{index}] is not valid base64: in JSON, BYTES elements are "
                "base64-encoded (or send the binary data extension)"
            ) from None
        images.append(_upload(tensor, index, data))
    return images


def _upload(tensor: _Input, index: int, data: bytes) -> ImageUpload:
    return ImageUpload(data, label=f"{tensor.name}[{index}]")


def _flatten(data: object) -> list:
    if not isinstance(data, list):
        return [data]
    flat = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _pixels(predictor: Predictor, tensor: _Input, binary: memoryview, count: int) -> np.ndarray:
    height, width = predictor.bundle.image_size
    expected = (height, width, 3)
    if len(tensor.shape) != 4 or tensor.shape[1:] != expected or tensor.shape[0] < 1:
        raise BadRequest(
            f"Input {tensor.name!r} (UINT8) has shape {list(tensor.shape)}; this model takes "
            f"[n, {height}, {width}, 3] RGB pixels (or send encoded images as BYTES)"
        )
    check_image_count(tensor.shape[0])
    if tensor.binary_size is not None:
        if len(binary) != count:
            raise BadRequest(
                f"Input {tensor.name!r}: shape {list(tensor.shape)} needs {count} bytes of "
                f"UINT8 data; {len(binary)} were sent"
            )
        flat = np.frombuffer(binary, dtype=np.uint8)
    else:
        values = _flatten(tensor.data)
        if len(values) != count:
            raise BadRequest(
                f"Input {tensor.name!r} has shape {list(tensor.shape)} ({count} values) but "
                f"'data' holds {len(values)}"
            )
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values
        ):
            raise BadRequest(f"Input {tensor.name!r}: UINT8 values are whole numbers 0 to 255")
        flat = np.asarray(values, dtype=np.uint8)
    return flat.reshape(tensor.shape)


# --- response -------------------------------------------------------------------------


def _output(name: str, value, as_binary: bool) -> tuple[dict, bytes | None]:
    if name == "probabilities":
        described = {"name": name, "datatype": "FP32", "shape": list(value.shape)}
        if as_binary:
            blob = value.astype("<f4").tobytes()
            return {**described, "parameters": {"binary_data_size": len(blob)}}, blob
        return {**described, "data": value.ravel().tolist()}, None
    described = {"name": name, "datatype": "BYTES", "shape": [len(value)]}
    if as_binary:
        encoded = [label.encode("utf-8") for label in value]
        blob = b"".join(struct.pack("<I", len(e)) + e for e in encoded)
        return {**described, "parameters": {"binary_data_size": len(blob)}}, blob
    return {**described, "data": list(value)}, None
