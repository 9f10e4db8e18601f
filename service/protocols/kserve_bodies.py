"""The Open Inference Protocol (KServe v2) bodies ktl reads and writes, shaped
after KServe's ``rest_predict_v2.yaml``: server and model metadata, the
inference request (with the binary data extension's parameters) and response.

ktl's model takes exactly one input, told apart by datatype: ``BYTES [n]``
(encoded images, base64 in JSON) or ``UINT8 [n, height, width, 3]`` (RGB pixels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import numpy as np
from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    PlainValidator,
    Strict,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from service.protocols.bodies import (
    EXAMPLE_IMAGE,
    IMAGE_COUNT_MAXIMUM,
    WHOLE_NUMBER,
    Base64Bytes,
    Base64Image,
    DocumentedAs,
    Maybe,
    Omitted,
    RequestModel,
    ResponseModel,
    decode_base64,
)

IMAGE_INPUT = "image_bytes"
PIXEL_INPUT = "pixels"
OUTPUTS = ("probabilities", "labels", "decision", "id")
INPUT_FORMS = (
    f"{IMAGE_INPUT!r} (BYTES [n], encoded images) or {PIXEL_INPUT!r} (UINT8 [n, height, width, 3])"
)

Count = Annotated[int, Field(ge=1), WHOLE_NUMBER]
# Tensor data in JSON: flat in row-major order, or nested (ktl reads either in row-major order).
if TYPE_CHECKING:  # mypy cannot follow a recursive TypeAliasType
    ImageData = list[Any]
    PixelData = list[Any]
else:
    ImageData = TypeAliasType("ImageData", list[Union[Base64Bytes, Base64Image, "ImageData"]])
    PixelData = TypeAliasType(
        "PixelData", list[Union[Annotated[int, Field(ge=0, le=255)], "PixelData"]]
    )


def flatten(data: list[Any]) -> list[Any]:
    """Nested lists as one list, in row-major order."""
    flat: list[Any] = []
    for item in data:
        flat.extend(flatten(item) if isinstance(item, list) else [item])
    return flat


def pixel_values(value: object) -> np.ndarray:
    """UINT8 tensor data as a flat uint8 array; whole numbers 0..255 (3.0 is 3).

    Checked with numpy rather than value by value: a batch of pixels in JSON can
    hold millions of numbers.
    """
    if not isinstance(value, list):
        raise PydanticCustomError("pixel_data", "must be a list of whole numbers 0 to 255")
    kinds = set(map(type, value))
    if list in kinds:
        value = flatten(value)
        kinds = set(map(type, value))
    if not kinds <= {int, float}:
        return _refuse_pixel(value, 0)
    try:
        numbers = np.asarray(value, dtype=np.float64 if float in kinds else np.int64)
    except OverflowError:
        return _refuse_pixel(value, 0)
    bad = (numbers < 0) | (numbers > 255) | (numbers != np.floor(numbers))
    if bad.any():
        return _refuse_pixel(value, int(np.argmax(bad)))
    return numbers.astype(np.uint8)


def image_elements(value: object) -> list[bytes]:
    """BYTES tensor data as the decoded images, in row-major order; stops at the first bad one
    (a body of megabytes can hold millions of elements)."""
    if not isinstance(value, list):
        raise PydanticCustomError("image_data", "must be a list of base64 images")
    images = []
    for index, element in enumerate(flatten(value)):
        encoded = element.get("b64") if isinstance(element, dict) else element
        try:
            images.append(decode_base64(encoded))
        except PydanticCustomError as exc:
            form = "b64 of element" if isinstance(element, dict) else "element"
            raise PydanticCustomError(
                "image_data",
                "{form} {index} (row-major): {problem}",
                {"form": form, "index": index, "problem": exc.message()},
            ) from None
    return images


# Validated by image_elements, documented as ImageData.
ImageElements = Annotated[list[bytes], PlainValidator(image_elements), DocumentedAs(ImageData)]


def _is_byte(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0 <= value <= 255
        and float(value).is_integer()
    )


def _refuse_pixel(values: list[Any], start: int) -> np.ndarray:
    index = next(i for i in range(start, len(values)) if not _is_byte(values[i]))
    raise PydanticCustomError(
        "pixel_value",
        "element {index} (row-major) is {value}: UINT8 values are whole numbers 0 to 255",
        {"index": index, "value": repr(values[index])[:20]},
    )


# Validated by pixel_values, documented as PixelData.
PixelValues = Annotated[np.ndarray, PlainValidator(pixel_values), DocumentedAs(PixelData)]


# --- metadata and health ------------------------------------------------------------------


class ServerMetadata(ResponseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(ResponseModel):
    live: bool


class ServerReady(ResponseModel):
    ready: bool


class ModelReady(ResponseModel):
    name: str
    version: str
    ready: bool


class TensorMetadata(ResponseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any size")


class ModelParameters(ResponseModel):
    labels: list[str] = Field(description="Class names, in the order of the probabilities")
    version: int


class ModelMetadata(ResponseModel):
    """A model version as the protocol describes it: its inputs and outputs."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: ModelParameters


class KServeError(ResponseModel):
    """The protocol's error shape, with ktl's machine code after it."""

    error: str
    code: str | None = Field(default=None, description="ktl's machine code")


# --- inference request --------------------------------------------------------------------


class TensorParameters(RequestModel):
    binary_data_size: Maybe[Annotated[int, Field(ge=0), WHOLE_NUMBER]] = Field(
        default=None,
        description="Binary data extension: the input's bytes follow the JSON, this many "
        "(the count must be exact: a 400 with code invalid_binary_data otherwise)",
    )


_DATA_RULE = "Holds as many elements as the shape says (a 400 with code shape_mismatch otherwise)"


class _Input(RequestModel):
    model_config = RequestModel.model_config | {
        "json_schema_extra": {
            "anyOf": [
                {"required": ["data"]},
                {
                    "required": ["parameters"],
                    "properties": {"parameters": {"required": ["binary_data_size"]}},
                },
            ]
        }
    }

    name: str = Field(description="Any name")
    parameters: Maybe[TensorParameters] = None

    @model_validator(mode="after")
    def _has_data(self) -> _Input:
        if getattr(self, "data", None) is None and self.binary_data_size is None:
            raise PydanticCustomError(
                "no_data", f"Input {self.name!r} has no 'data' (and no binary_data_size)"
            )
        return self

    @property
    def binary_data_size(self) -> int | None:
        return None if self.parameters is None else self.parameters.binary_data_size


class ImageInput(_Input):
    """Encoded images, one element each: base64 text or {"b64": ...}."""

    datatype: Literal["BYTES"]
    shape: list[Count] = Field(
        min_length=1, fail_fast=True, description="[n]: n images (any shape of n elements)"
    )
    data: Maybe[ImageElements] = Field(default=None, description=_DATA_RULE)


class PixelInput(_Input):
    """RGB pixels, 0..255, at the model's image size."""

    datatype: Literal["UINT8"]
    shape: tuple[
        Annotated[int, Field(ge=1, json_schema_extra=IMAGE_COUNT_MAXIMUM), WHOLE_NUMBER],
        Count,
        Count,
        Literal[3],
    ] = Field(
        description="[n, height, width, 3]: height and width must be the model's image size "
        "(GET /v2/models/{name}; a 400 with code shape_mismatch otherwise)"
    )
    data: Maybe[PixelValues] = Field(default=None, description=_DATA_RULE)


InputTensor = Annotated[
    ImageInput | PixelInput,
    Discriminator("datatype"),
]


def _one_input(inputs: list[ImageInput | PixelInput]) -> list[ImageInput | PixelInput]:
    if len(inputs) != 1:
        raise PydanticCustomError(
            "one_input", f"Send exactly one input ({len(inputs)} given): {INPUT_FORMS}"
        )
    return inputs


def _known_output(name: str) -> str:
    if name not in OUTPUTS:
        raise PydanticCustomError(
            "unknown_output",
            f"Unknown output {name[:40]!r}; this model has outputs {list(OUTPUTS)}",
        )
    return name


OutputName = Annotated[
    str, AfterValidator(_known_output), WithJsonSchema({"type": "string", "enum": list(OUTPUTS)})
]


class OutputParameters(RequestModel):
    binary_data: Maybe[Annotated[bool, Strict()]] = Field(
        default=None, description="Binary data extension: send this output as bytes"
    )


class RequestedOutput(RequestModel):
    name: OutputName
    parameters: Maybe[OutputParameters] = None


class RequestParameters(RequestModel):
    binary_data_output: Maybe[Annotated[bool, Strict()]] = Field(
        default=None, description="Binary data extension: send every output as bytes"
    )


class InferenceRequest(RequestModel):
    """One input (see inputs); outputs picks the outputs (default: both)."""

    model_config = RequestModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "id": "1",
                    "inputs": [
                        {
                            "name": IMAGE_INPUT,
                            "datatype": "BYTES",
                            "shape": [1],
                            "data": [EXAMPLE_IMAGE],
                        }
                    ],
                    "outputs": [{"name": "labels"}],
                }
            ]
        }
    }

    id: Maybe[str] = Field(default=None, description="Echoed in the response")
    parameters: Maybe[RequestParameters] = None
    inputs: Annotated[list[InputTensor], AfterValidator(_one_input)] = Field(
        fail_fast=True,
        json_schema_extra={"minItems": 1, "maxItems": 1},
        description=f"Exactly one: {INPUT_FORMS}",
    )
    outputs: Maybe[Annotated[list[RequestedOutput], Field(fail_fast=True)]] = None

    @property
    def input(self) -> ImageInput | PixelInput:
        return self.inputs[0]


# --- inference response ---------------------------------------------------------------------


class OutputTensor(ResponseModel):
    name: str
    datatype: Literal["FP32", "BYTES"]
    shape: list[int]
    data: Omitted[list[float] | list[str]] = None
    parameters: Omitted[dict[str, Any]] = Field(
        default=None, description="binary_data_size: the output's bytes follow the JSON"
    )


class InferenceResponse(ResponseModel):
    """probabilities (FP32 [n, classes], label order) and labels (BYTES [n], the top one)."""

    model_name: str
    model_version: str
    id: Omitted[str] = None
    outputs: list[OutputTensor]
