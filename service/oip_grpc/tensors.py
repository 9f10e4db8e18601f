"""The protocol's gRPC messages in and out of what ``service.protocols.kserve_core`` reads and
answers. An inference request becomes the same ``InferenceRequest`` the REST form
reads, checked by the same validation: raw contents (``raw_input_contents``) are
the binary data extension's bytes, typed BYTES contents are put in that form, typed
UINT8 contents are its JSON ``data``. Outputs come back in the form the request
used: raw contents for a raw request (what tritonclient sends), typed otherwise.
"""

from __future__ import annotations

import json
import struct

from service.contract.errors import InvalidBinaryData
from service.contract.validation import validate_json
from service.oip_grpc import inference_pb2 as pb
from service.protocols.kserve_bodies import InferenceRequest, ModelMetadata
from service.protocols.kserve_core import Inferred

_HINT = (
    "send one input, image_bytes (BYTES [n], encoded images) or pixels (UINT8 "
    "[n, height, width, 3]), in raw_input_contents or in its typed contents"
)


def read_infer_request(message: pb.ModelInferRequest) -> tuple[InferenceRequest, memoryview]:
    """The request as the REST form would read it, and the input's bytes."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise InvalidBinaryData(
            f"raw_input_contents holds {len(raw)} elements for {len(message.inputs)} inputs; "
            "send one per input, in input order"
        )
    inputs: list[dict[str, object]] = []
    binary = b""
    for index, tensor in enumerate(message.inputs):
        entry: dict[str, object] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if raw and tensor.HasField("contents"):
            raise InvalidBinaryData(
                f"Input {tensor.name!r} has typed contents and raw_input_contents; send one"
            )
        if raw or tensor.datatype == "BYTES":
            binary = raw[index] if raw else _length_prefixed(tensor.contents.bytes_contents)
            entry["parameters"] = {"binary_data_size": len(binary)}
        else:
            entry["data"] = list(tensor.contents.uint_contents)
        inputs.append(entry)
    document: dict[str, object] = {"inputs": inputs}
    if message.id:
        document["id"] = message.id
    if message.outputs:
        document["outputs"] = [{"name": output.name} for output in message.outputs]
    request = validate_json(InferenceRequest, json.dumps(document).encode(), hint=_HINT)
    return request, memoryview(binary)


def _length_prefixed(elements: list[bytes]) -> bytes:
    """BYTES elements as raw contents: each a 4-byte little-endian length, then itself."""
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def infer_response(inferred: Inferred) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(
        model_name=inferred.model_name,
        model_version=inferred.model_version,
        id=inferred.id or "",
    )
    for output in inferred.outputs:
        tensor = response.outputs.add(
            name=output.tensor.name, datatype=output.tensor.datatype, shape=output.tensor.shape
        )
        data = output.tensor.data or []
        if output.blob is not None:
            response.raw_output_contents.append(output.blob)
        elif output.tensor.datatype == "FP32":
            tensor.contents.fp32_contents.extend(float(value) for value in data)
        else:
            tensor.contents.bytes_contents.extend(str(label).encode("utf-8") for label in data)
    return response


def metadata_response(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    """The REST body's fields that the gRPC message has (the labels are REST's alone:
    parameters)."""
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=metadata.versions,
        platform=metadata.platform,
        inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.inputs],
        outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.outputs],
    )
