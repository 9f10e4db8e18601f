"""Tensors of the Open Inference Protocol in and out of ktl: the request read from
its JSON form or from the binary data extension (the JSON first, then each
binary input's bytes in order), inputs turned into images or pixels, outputs
into JSON data or bytes.

In the binary form BYTES elements are 4-byte little-endian lengths, each
followed by the element; in JSON they are base64 (``{"b64": ...}`` or plain).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from flask import Request

from service.contract.errors import InvalidBinaryData, ShapeMismatch
from service.contract.validation import validate_json
from service.guards.request_limits import check_image_count
from service.protocols.kserve_bodies import ImageInput, InferenceRequest, OutputTensor, PixelInput
from service.serving.predictor import ImageUpload

HEADER_LENGTH = "Inference-Header-Content-Length"
_SHAPE = 'send {"inputs": [{"name": ..., "shape": [...], "datatype": ..., "data": [...]}]}'


def read_request(req: Request) -> tuple[InferenceRequest, memoryview]:
    """The inference request and the bytes after its JSON (empty in the JSON form)."""
    raw = req.get_data(cache=False)
    length_text = req.headers.get(HEADER_LENGTH)
    if length_text is None and req.mimetype != "application/octet-stream":
        return validate_json(InferenceRequest, raw, hint=_SHAPE), memoryview(b"")
    # The binary data extension: a body that does not even start with a JSON object
    # is a framing error, which the OpenAPI document can only describe in words.
    length = len(raw) if length_text is None else _header_length(length_text, len(raw))
    hint = f"the first {length} bytes ({HEADER_LENGTH}) must be the JSON request; {_SHAPE}"
    request = validate_json(InferenceRequest, raw[:length], hint=hint, unreadable=InvalidBinaryData)
    return request, memoryview(raw)[length:]


def _header_length(text: str, size: int) -> int:
    try:
        length = int(text)
    except ValueError:
        length = -1
    if not 0 <= length <= size:
        raise InvalidBinaryData(
            f"{HEADER_LENGTH} is {text[:20]!r}; it must be the length of the JSON part of the "
            f"body, 0 to {size} bytes here"
        )
    return length


def _check_binary_size(tensor: ImageInput | PixelInput, binary: memoryview) -> None:
    if tensor.binary_data_size is not None and tensor.binary_data_size != len(binary):
        raise InvalidBinaryData(
            f"Input {tensor.name!r} declares binary_data_size {tensor.binary_data_size} but "
            f"{len(binary)} bytes follow the JSON ({HEADER_LENGTH})"
        )


def images_of(tensor: ImageInput, binary: memoryview) -> list[ImageUpload]:
    """The encoded images of a BYTES input."""
    _check_binary_size(tensor, binary)
    count = int(np.prod(tensor.shape))
    if tensor.binary_data_size is not None:
        elements = _binary_elements(tensor, binary)
        source = "its binary data"
    else:
        elements = tensor.data or []
        source = "'data'"
    if len(elements) != count:
        raise ShapeMismatch(
            f"Input {tensor.name!r} has shape {tensor.shape} ({count} elements) but {source} "
            f"holds {len(elements)}"
        )
    check_image_count(count)
    return [
        ImageUpload(element, label=f"{tensor.name}[{index}]")
        for index, element in enumerate(elements)
    ]


def _binary_elements(tensor: ImageInput, binary: memoryview) -> list[bytes]:
    elements: list[bytes] = []
    offset = 0
    while offset < len(binary):
        if offset + 4 > len(binary):
            raise InvalidBinaryData(
                f"Input {tensor.name!r}: binary BYTES data ends inside a length"
            )
        (size,) = struct.unpack_from("<I", binary, offset)
        offset += 4
        if offset + size > len(binary):
            raise InvalidBinaryData(
                f"Input {tensor.name!r}: element {len(elements)} claims {size} bytes; "
                f"only {len(binary) - offset} follow"
            )
        elements.append(bytes(binary[offset : offset + size]))
        offset += size
    return elements


def pixels_of(tensor: PixelInput, binary: memoryview, image_size: tuple[int, int]) -> np.ndarray:
    """The ``(n, height, width, 3)`` uint8 pixels of a UINT8 input."""
    _check_binary_size(tensor, binary)
    height, width = image_size
    if tensor.shape[1:3] != (height, width):
        raise ShapeMismatch(
            f"Input {tensor.name!r} (UINT8) has shape {list(tensor.shape)}; this model takes "
            f"[n, {height}, {width}, 3] RGB pixels (or send encoded images as BYTES)"
        )
    check_image_count(tensor.shape[0])
    count = int(np.prod(tensor.shape))
    if tensor.binary_data_size is not None:
        flat = np.frombuffer(binary, dtype=np.uint8)
        source = "its binary data holds"
    else:
        assert tensor.data is not None  # the input's validator wants data or binary_data_size
        flat = tensor.data
        source = "'data' holds"
    if flat.size != count:
        raise ShapeMismatch(
            f"Input {tensor.name!r} has shape {list(tensor.shape)} ({count} values) but "
            f"{source} {flat.size}"
        )
    return flat.reshape(tensor.shape)


@dataclass(frozen=True)
class Output:
    """One output of the response: how JSON describes it, and its bytes when binary."""

    tensor: OutputTensor
    blob: bytes | None


def probabilities_output(values: np.ndarray, as_binary: bool) -> Output:
    shape = list(values.shape)
    if as_binary:
        blob = values.astype("<f4").tobytes()
        sized = {"binary_data_size": len(blob)}
        return Output(
            OutputTensor(name="probabilities", datatype="FP32", shape=shape, parameters=sized), blob
        )
    data = values.astype(np.float32).ravel().tolist()
    return Output(OutputTensor(name="probabilities", datatype="FP32", shape=shape, data=data), None)


def labels_output(labels: list[str], as_binary: bool, name: str = "labels") -> Output:
    """A BYTES output of one UTF-8 string per image: ``labels``, or ``decision``."""
    shape = [len(labels)]
    if as_binary:
        encoded = [label.encode("utf-8") for label in labels]
        blob = b"".join(struct.pack("<I", len(e)) + e for e in encoded)
        sized = {"binary_data_size": len(blob)}
        return Output(
            OutputTensor(name=name, datatype="BYTES", shape=shape, parameters=sized), blob
        )
    return Output(OutputTensor(name=name, datatype="BYTES", shape=shape, data=labels), None)
