"""Limits on what one request may carry: the body size, chunked bodies included
(checked once for the whole app), and the number of images."""

from __future__ import annotations

import io

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from service.contract.errors import PayloadTooLarge
from service.contract.operation import operation_of
from service.state import service_state

_EXTENSION = "ktl.request_limits"


def bound_unsized_body() -> None:
    """A ``before_request`` hook: a chunked body over the upload limit is a 413.

    Gunicorn marks chunked bodies (no Content-Length) ``wsgi.input_terminated``,
    and for those werkzeug only cuts the stream at MAX_CONTENT_LENGTH, silently:
    the route would see the first megabytes as if they were the whole upload. So
    read such a body here, at most one byte past the limit, and hand the routes a
    sized copy.
    """
    environ = request.environ
    if streamed_body() and request.mimetype == "multipart/form-data":
        # A dataset archive: its own limit, and werkzeug streams it to a file (the
        # app's request class), cutting a chunked body at the limit with a 413. Any
        # other body of such a route is read in memory: the upload limit holds.
        request.max_content_length = service_state().config.max_dataset_bytes
        return
    limit = request.max_content_length
    if request.url_rule is None or limit is None or request.content_length is not None:
        return  # no route reads it, no limit, or werkzeug bounds it by its length
    if not environ.get("wsgi.input_terminated"):
        return  # werkzeug then reads no body at all: nothing unbounded
    stream = environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(1 << 16, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(b"".join(chunks))
    environ["CONTENT_LENGTH"] = str(size)


def streamed_body() -> bool:
    """Whether the matched route takes its body to disk (``@operation(streamed=True)``)."""
    if request.url_rule is None:
        return False
    record = operation_of(current_app.view_functions.get(request.endpoint or ""))
    return record is not None and record.streamed


def check_image_count(count: int) -> None:
    """413 when one request holds more images than KTL_MAX_IMAGES_PER_REQUEST."""
    limit = service_state().config.max_images_per_request
    if count > limit:
        raise PayloadTooLarge(
            f"The request holds {count} images; at most {limit} are allowed in one request "
            "(KTL_MAX_IMAGES_PER_REQUEST): split it"
        )


def init_app(app: Flask) -> None:
    """Bound every route's body; idempotent."""
    if app.extensions.get(_EXTENSION):
        return
    app.extensions[_EXTENSION] = True
    app.before_request(bound_unsized_body)
