"""Parts of the contract many routes share: their error responses and the
upload body of the routes that take images (see ``service.contract.operation``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from service.contract.operation import Body, Reply
from service.protocols.bodies import IMAGE_COUNT_LIMIT, ErrorBody

BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
PNG = {"image/png": {"schema": BINARY}}
HTML = {"text/html": {"schema": {"type": "string"}}}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying (when the queue is full)",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def error(description: str, body: type[BaseModel] = ErrorBody, **headers: Any) -> Reply:
    return Reply(description, body, headers=headers)


def model_errors(body: type[BaseModel] = ErrorBody) -> dict[int, Reply]:
    """What any route that names a model may answer besides its own result."""
    return {
        404: error("Unknown model or version, or an invalid model name", body),
        503: error(
            "The model or version exists but could not be loaded, or the server is "
            "saturated (queue full: retry later)",
            body,
            **RETRY_AFTER,
        ),
    }


def upload_errors(bad_request: str, body: type[BaseModel] = ErrorBody) -> dict[int, Reply]:
    """What a route that decodes images may answer besides its own result."""
    return {
        400: error(bad_request, body),
        413: error(
            "Body over KTL_MAX_UPLOAD_MB, an image over KTL_MAX_IMAGE_PIXELS, or more images "
            "than KTL_MAX_IMAGES_PER_REQUEST",
            body,
        ),
        415: error("A Content-Type this route does not accept", body),
        **model_errors(body),
    }


def image_upload(*, batch: bool) -> Body:
    """Images as files in multipart field ``image``, or one image as the raw body."""
    if batch:
        field: dict[str, Any] = {
            "type": "array",
            "items": BINARY,
            "minItems": 1,
            **IMAGE_COUNT_LIMIT,
            "description": "One or more image files (several = a batch)",
        }
    else:
        field = {**BINARY, "description": "One image file"}
    return Body(
        content={
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["image"], "properties": {"image": field}}
            },
            "image/*": {"schema": {**BINARY, "description": "One image, as it is"}},
        },
        description="Any image format Pillow reads: JPEG, PNG, GIF, WebP, BMP, TIFF ...",
    )
