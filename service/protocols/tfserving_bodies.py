"""TensorFlow Serving's REST predict bodies, as pydantic models:
``{"instances": [{"b64": ...} | {"image_bytes": {"b64": ...}}]}`` in,
``{"predictions": [[p_0, ...]]}`` out, ``{"error": ...}`` when refused."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from service.protocols.bodies import (
    EXAMPLE_IMAGE,
    IMAGE_COUNT_LIMIT,
    Base64Bytes,
    Base64Image,
    Maybe,
    RequestModel,
    ResponseModel,
)

INSTANCE_FORMS = '{"b64": "<base64 image>"} or {"image_bytes": {"b64": "<base64 image>"}}'


class Instance(RequestModel):
    """One encoded image: {"b64": ...}, or {"image_bytes": {"b64": ...}} (which wins when
    both are given), as TF Serving's image models take them."""

    model_config = RequestModel.model_config | {
        "json_schema_extra": {"anyOf": [{"required": ["b64"]}, {"required": ["image_bytes"]}]}
    }

    b64: Maybe[Base64Bytes] = None
    image_bytes: Maybe[Base64Image] = None

    @model_validator(mode="before")
    @classmethod
    def _one_of_the_forms(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not ({"b64", "image_bytes"} & value.keys()):
            raise PydanticCustomError("instance", f"must be {INSTANCE_FORMS}")
        return value

    @property
    def data(self) -> bytes:
        data = self.image_bytes.b64 if self.image_bytes is not None else self.b64
        assert data is not None  # the validator made sure one form is there
        return data


class TFServingRequest(RequestModel):
    """A batch of encoded images."""

    model_config = RequestModel.model_config | {
        "json_schema_extra": {
            "examples": [
                {"instances": [{"b64": EXAMPLE_IMAGE}, {"image_bytes": {"b64": EXAMPLE_IMAGE}}]}
            ]
        }
    }

    instances: list[Instance] = Field(
        min_length=1,
        fail_fast=True,
        json_schema_extra=IMAGE_COUNT_LIMIT,
        description="One entry per image",
    )


class TFServingResponse(ResponseModel):
    """Probabilities in label order, one row per instance; and ktl's decision per
    instance beside them (TF Serving clients read ``predictions`` and pass over it)."""

    predictions: list[list[Annotated[float, Field(ge=0, le=1)]]]
    decisions: list[str | None] | list[list[str]] = Field(
        description="Per instance: the top label where its probability reaches the "
        "version's threshold, else null (not sure / none of these); for a multi-label "
        "version, the labels whose probability reaches their own threshold (maybe none)"
    )
    ids: list[str] = Field(
        description="Per instance: the prediction's id (unique, sortable by time), which "
        "feedback names"
    )


class TFServingError(ResponseModel):
    """TF Serving's error shape, with ktl's machine code after it."""

    error: str
    code: str | None = Field(default=None, description="ktl's machine code")
