"""``X-Request-Id``: every response carries one, the client's when it sent a valid one
(1-128 of letters, digits and ``._:-``, as proxies and tracing systems write them),
else a new id (``models.ids``). Log lines and captured records can name it."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from models.ids import new_id

REQUEST_ID_HEADER = "X-Request-Id"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_PARAMETER: dict[str, Any] = {
    "name": REQUEST_ID_HEADER,
    "in": "header",
    "required": False,
    "description": "The client's id of this request, echoed in the response when it is 1-128 "
    "of letters, digits and ._:-; any other value is accepted and replaced by a new id, "
    "never refused",
    "schema": {"type": "string"},
}
REQUEST_ID_DOC: dict[str, Any] = {
    REQUEST_ID_HEADER: {
        "description": "The request's id: the client's X-Request-Id when valid, else a new one",
        "schema": {"type": "string", "pattern": _VALID.pattern},
    }
}


def request_id() -> str:
    """The current request's id."""
    identifier = g.get("ktl_request_id")
    if identifier is None and not has_request_context():  # gRPC: one id per call
        identifier = g.ktl_request_id = new_id()
    if identifier is None:
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        identifier = sent if _VALID.fullmatch(sent) else new_id()
        g.ktl_request_id = identifier
    return identifier


def _name_the_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = request_id()
    return response


def init_app(app: Flask) -> None:
    app.after_request(_name_the_request)
