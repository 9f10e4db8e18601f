"""The service's own errors (on top of ``models.errors``, whose classes all carry
their HTTP status and code), and the one handler that turns every error leaving
the app into ``{"error": "<message>", "code": "<machine code>"}``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from models.errors import KtlError, ModelNotFound, Unavailable, UserError
from models.preprocessing import ImageTooLarge, InvalidImage

__all__ = [
    "BadRequest",
    "ImageTooLarge",
    "InvalidBinaryData",
    "InvalidImage",
    "KtlError",
    "ModelNotFound",
    "ModelUnavailable",
    "NotReady",
    "Overloaded",
    "PayloadTooLarge",
    "ShapeMismatch",
    "Unauthorized",
    "Unavailable",
    "UnknownClass",
    "UnknownLayer",
    "UnsupportedMediaType",
    "register_error_handlers",
]

log = logging.getLogger("ktl.service")


class BadRequest(UserError):
    """A request the service cannot use; the message names the field."""


# The next four are rules the OpenAPI document can state only in words (they depend
# on the model, or on byte counts), so each has a code of its own that clients and
# the contract tests can tell apart from a body the document itself rules out.


class UnknownClass(UserError):
    """A class that is none of the model's labels or label indexes."""

    code = "unknown_class"


class UnknownLayer(UserError):
    """A layer name the model does not have (or one without feature maps)."""

    code = "unknown_layer"


class ShapeMismatch(UserError):
    """A tensor whose data does not fill its shape, or whose shape the model does not take."""

    code = "shape_mismatch"


class InvalidBinaryData(UserError):
    """A body of the binary data extension whose parts do not add up."""

    code = "invalid_binary_data"


class Unauthorized(UserError):
    status = 401
    code = "unauthorized"


class PayloadTooLarge(UserError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(UserError):
    status = 415
    code = "unsupported_media_type"


class ModelUnavailable(Unavailable):
    """The model or version exists in the store but could not be loaded."""

    code = "model_unavailable"


class NotReady(Unavailable):
    code = "not_ready"


class Overloaded(Unavailable):
    code = "overloaded"
    retry_after_s = 1

    def __init__(self, message: str):
        super().__init__(message, headers={"Retry-After": str(self.retry_after_s)})


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | Iterable | None = None
) -> Response:
    response = jsonify(error=message, code=code)
    response.status_code = status
    response.headers.extend(headers or {})
    return response


def _handle_ktl_error(exc: KtlError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    # Keep the headers werkzeug attaches (Allow on a 405, for one), not its HTML.
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    if isinstance(exc, RequestEntityTooLarge):
        return error_response(status, PayloadTooLarge.code, _too_large(exc), headers)
    if status == 404:
        message = f"No route {request.path!r}; GET /openapi.json lists the routes"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.path!r}"
    else:
        message = exc.description or exc.name
    code = re.sub(r"[^a-z0-9]+", "_", exc.name.lower()).strip("_")
    return error_response(status, code, message, headers)


# Werkzeug raises one bare RequestEntityTooLarge for three limits; where it was raised
# tells them apart: (module, function) of the innermost frame.
_FORM_LIMITS = {
    ("werkzeug.sansio.multipart", "next_event"): "parts",
    ("werkzeug.sansio.multipart", "receive_data"): "field",
    ("werkzeug.formparser", "parse"): "field",
}


def _too_large(exc: RequestEntityTooLarge) -> str:
    """What a 413 of werkzeug's says: the limit that fired, by name."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = (str(tb.tb_frame.f_globals.get("__name__")), tb.tb_frame.f_code.co_name) if tb else None
    limit = _FORM_LIMITS.get(where) if where else None
    if limit == "parts":
        return (
            f"The form has more than {request.max_form_parts:,} parts, the most one request "
            "may have"
        )
    if limit == "field":
        return (
            f"A text field of the form is over {request.max_form_memory_size:,} bytes, the "
            "most a field may hold (files are not held to it)"
        )
    body = request.max_content_length
    if not body:
        return "The request is too large"
    upload = body == current_app.config["MAX_CONTENT_LENGTH"]
    what, setting = ("upload", "KTL_MAX_UPLOAD_MB") if upload else ("dataset", "KTL_MAX_DATASET_MB")
    return f"The request body is larger than the {what} limit of {body / 2**20:g} MB ({setting})"


def _handle_unexpected(exc: Exception) -> Response:
    log.exception("Unhandled error in %s %s", request.method, request.path)
    return error_response(500, KtlError.code, "Internal server error; see the server log")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(KtlError, _handle_ktl_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
