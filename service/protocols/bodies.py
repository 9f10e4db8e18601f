"""The JSON bodies of the native API, and the pieces every protocol shares, as
pydantic models: the one source for validating requests, shaping responses and
writing the OpenAPI document (``service.contract.openapi``)."""

from __future__ import annotations

import binascii
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue, SkipJsonSchema
from pydantic_core import CoreSchema, PydanticCustomError

T = TypeVar("T")

# Bounds that come from the configuration: the document builder writes the value
# in place of the marker, so the document states this server's own limit.
LIMIT_MARKER = "x-ktl-limit"
IMAGE_COUNT_LIMIT: JsonDict = {LIMIT_MARKER: {"maxItems": "max_images_per_request"}}
IMAGE_COUNT_MAXIMUM: JsonDict = {LIMIT_MARKER: {"maximum": "max_images_per_request"}}


class ResponseModel(BaseModel):
    """A body the service writes."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)


class RequestModel(BaseModel):
    """What the service reads (a body or a query); keys it does not know are ignored, as
    the protocols allow."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


def _not_null(value: object) -> object:
    if value is None:
        raise PydanticCustomError("null", "null is not accepted here: leave the field out")
    return value


# An optional field of a body the service reads: left out it is None; an explicit
# null is refused, so the document can say "a string", not "a string or null".
Maybe = Annotated[T | SkipJsonSchema[None], BeforeValidator(_not_null)]
# An optional field of a body the service writes: None is left out of it
# (json_body(..., exclude_none=True)), so the document does not mention null.
Omitted: TypeAlias = T | SkipJsonSchema[None]


def _whole_number(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("whole_number", "must be a whole number")
    return value


# For an int field, after its bounds (Annotated[int, Field(ge=1), WHOLE_NUMBER]): JSON
# Schema's integer, where 3 and 3.0 are one and true and "3" are none (pydantic's own
# int takes all four). After the bounds, so the document shows them as JSON Schema.
WHOLE_NUMBER = BeforeValidator(_whole_number)


class DocumentedAs:
    """Annotation: validate as annotated, document as ``documented`` (a type whose JSON
    schema pydantic can write, where the validator is a function)."""

    def __init__(self, documented: Any):
        self._schema = TypeAdapter(documented).core_schema

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(self._schema)


# --- base64 --------------------------------------------------------------------------

_SPACE = r"[ \t\n\r]*"  # line breaks and spaces, as wrapping encoders (MIME, openssl) add
_SYMBOL = rf"[A-Za-z0-9+/]{_SPACE}"
# Groups of four, the last padded with =; more = after a full group are ignored, as
# Python's strict decoder (what this service has always used) ignores them.
BASE64_PATTERN = (
    rf"^{_SPACE}(?:(?:{_SYMBOL}){{4}})*"
    rf"(?:(?:{_SYMBOL}){{4}}(?:={_SPACE})*|(?:{_SYMBOL}){{2}}={_SPACE}={_SPACE}"
    rf"|(?:{_SYMBOL}){{3}}={_SPACE})?$"
)
_SPACE_BYTES = b" \t\n\r"


def decode_base64(value: object) -> bytes:
    """Base64 text as bytes: exactly what BASE64_PATTERN allows (a test holds them to it),
    checked by the decoder itself, which is linear where the pattern is not."""
    if not isinstance(value, str):
        raise PydanticCustomError("base64_type", "must be base64 text")
    try:
        compact = value.encode("ascii").translate(None, _SPACE_BYTES)
        return binascii.a2b_base64(compact, strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        raise PydanticCustomError(
            "base64",
            "not valid base64: A-Z, a-z, 0-9, + and / in groups of four, the last group "
            "padded with = (line breaks allowed)",
        ) from None


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(decode_base64),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": BASE64_PATTERN,
            "contentEncoding": "base64",
            "description": "Standard base64, padded; spaces and line breaks are ignored",
        }
    ),
]


# A 1x1 PNG: the examples of the document, which a client (or a contract test) can send.
EXAMPLE_IMAGE = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGM4EaABAAMkAUEdGZ/EAAAAAElFTkSuQmCC"
)


class Base64Image(RequestModel):
    """An encoded image (any format Pillow reads), in base64."""

    b64: Base64Bytes


# --- errors and probes ---------------------------------------------------------------


class ErrorBody(ResponseModel):
    """An error: a message for a person and a machine code."""

    error: str = Field(description="What went wrong and what to do about it")
    code: str = Field(
        description="bad_request, invalid_image, image_too_large, model_not_found, "
        "unauthorized, payload_too_large, unsupported_media_type, overloaded, ..."
    )


class Health(ResponseModel):
    """The process is alive."""

    status: Literal["ok"]


class Readiness(ResponseModel):
    """At least one model is loaded and servable."""

    status: Literal["ready"]
    models: int = Field(ge=1, description="Models with a servable default version")


# --- models and metadata -------------------------------------------------------------


class UnavailableVersion(ResponseModel):
    version: int = Field(ge=1)
    reason: str = Field(description="Why the version could not be loaded")


class VersionDetail(ResponseModel):
    version: int
    created_at: str | None
    accuracy: float | None
    accuracy_split: str | None = Field(description="test, or validation (format 1: None)")
    threshold: float | None = Field(description="Below it, a prediction is 'not sure'")
    engine: str = Field(
        description="What runs this version here (KTL_ENGINE): the Keras model, or its "
        "INT8 artifact"
    )
    int8_agreement: float | None = Field(
        description="The INT8 artifact's lowest top-1 agreement with the float model over "
        "the splits checked; null: the version has none"
    )


class ModelSummary(ResponseModel):
    name: str
    versions: list[int] = Field(description="Versions in the store that load, ascending")
    default_version: int | None = Field(description="The version served by default")
    labels: list[str] | None = Field(description="Class names, in output order")
    backbone: str | None
    image_size: list[int] | None = Field(description="[height, width] the model takes")
    status: Literal["available", "unavailable"]
    unavailable_versions: list[UnavailableVersion]
    version_details: list[VersionDetail] = Field(
        description="Each version's date, accuracy (on its test split when it has one) "
        "and decision threshold, newest first"
    )
    version_labels: dict[str, int] = Field(
        description='Labels of the versions, e.g. {"stable": 3, "canary": 4} (ktl label)'
    )
    canary_weight: float = Field(
        ge=0,
        le=1,
        description="The share of default traffic the canary version answers now (0: none)",
    )
    policy: Literal["stable", "latest"] = Field(
        description="How the default version is chosen: the version labelled stable, or "
        "the highest (a model without a stable label)"
    )


class ModelList(ResponseModel):
    """Every model in the store, with the versions that failed to load and why."""

    models: list[ModelSummary]


class ExplainedClass(ResponseModel):
    label: str
    index: int = Field(ge=0)


class Explanation(ResponseModel):
    """A Grad-CAM heatmap as numbers."""

    model: str
    version: int = Field(ge=1)
    class_: ExplainedClass = Field(alias="class")
    heatmap: list[list[Annotated[float, Field(ge=0, le=1)]]] = Field(
        description="Rows of the last feature map, 0..1 (1 at the peak)"
    )


def json_body(message: BaseModel, *, exclude_none: bool = False) -> dict[str, Any]:
    """A written body as JSON-ready data, keys as the contract names them."""
    return message.model_dump(mode="json", by_alias=True, exclude_none=exclude_none)
