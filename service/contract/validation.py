"""Requests checked against the contract's pydantic models: the query of every
documented route (once for the app, before anything reads the body) and JSON
bodies; a refusal is a 400 whose message names the field path, e.g.
``inputs[0].shape[1]: Input should be greater than or equal to 1``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import pydantic_core
from flask import Flask, current_app, g, request
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from models.errors import UserError
from service.contract.errors import BadRequest
from service.contract.operation import operation_of

M = TypeVar("M", bound=BaseModel)

_EXTENSION = "ktl.validation"
_MESSAGES = 3  # errors named in one message; the first few are what a person fixes first
_SCANNED = 50  # errors read to find those few (lists stop at their first bad item anyway)


def validate_json(
    model: type[M], raw: bytes, *, hint: str = "", unreadable: type[UserError] = BadRequest
) -> M:
    """``raw`` as ``model``, or a 400 naming the fields; ``hint`` says what to send.

    ``unreadable`` is raised instead when ``raw`` is no JSON object at all.
    """
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        at_root = any(not details["loc"] for details in exc.errors())
        refusal = unreadable if at_root else BadRequest
        raise refusal(describe(exc, _parsed(raw)) + (f"; {hint}" if hint else "")) from None


def describe(exc: ValidationError, document: object) -> str:
    """The errors of ``exc`` as ``path: message``, paths as they appear in ``document``."""
    messages: dict[str, str] = {}
    for error in exc.errors(include_url=False)[:_SCANNED]:
        if error["type"] == "json_invalid":
            return f"The body is not valid JSON ({error['msg'].removeprefix('Invalid JSON: ')})"
        if error["type"] == "none_required":
            continue  # the "or leave it out" side of an optional field: never the fix
        path = field_path(error["loc"], document, missing=error["type"] == "missing")
        messages.setdefault(path, error["msg"])  # a union's first member says it best
    parts = [f"{path or 'The body'}: {msg}" for path, msg in messages.items()]
    more = len(parts) - _MESSAGES
    return "; ".join(parts[:_MESSAGES]) + (f" (and {more} more)" if more > 0 else "")


def field_path(loc: tuple[int | str, ...], document: object, *, missing: bool = False) -> str:
    """``('inputs', 0, 'UINT8', 'shape')`` as ``inputs[0].shape``.

    Pydantic puts the member of a union it tried into the location; that is no
    place in the body, so a part the body does not have is left out (unless it is
    the field a ``missing`` error names).
    """
    path, node = "", document
    for position, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif isinstance(node, dict) and (part in node or (missing and position == len(loc) - 1)):
            path += f".{part}" if path else part
            node = node.get(part)
    return path


def _parsed(raw: bytes) -> object:
    try:
        return pydantic_core.from_json(raw)
    except ValueError:
        return None


# --- queries ---------------------------------------------------------------------------


def validate_query(model: type[M], args: Mapping[str, str]) -> M:
    """The query parameters as ``model`` (repeated ones: the first), or a 400 naming them."""
    try:
        return model.model_validate(dict(args))
    except ValidationError as exc:
        raise BadRequest(_query_message(model, exc, args)) from None


def _query_message(model: type[BaseModel], exc: ValidationError, args: Mapping[str, str]) -> str:
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    messages = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "?"
        if error["type"] == "missing":
            about = fields[name].description if name in fields else None
            messages.append(
                f"Query parameter {name!r} is required" + (f": {about}" if about else "")
            )
        elif error["type"] != "none_required":
            value = str(args.get(name, ""))
            messages.append(f"Query parameter {name!r} is {value[:40]!r}: {_plain(error)}")
    return "; ".join(dict.fromkeys(messages))


def _plain(error: ErrorDetails) -> str:
    """The message of a query error, without quoting choices a URL never quotes."""
    if error["type"] == "literal_error":
        return f"must be {str(error.get('ctx', {}).get('expected', '')).replace(chr(39), '')}"
    return error["msg"]


def query(model: type[M]) -> M:
    """The validated query of the current request (the route's ``@operation(query=...)``)."""
    value = g.get("ktl_query")
    if not isinstance(value, model):
        raise TypeError(f"The route documents no {model.__name__} query")
    return value


def _check_query() -> None:
    """A ``before_request`` hook: the route's query model, before the body is read."""
    if request.url_rule is None:
        return
    record = operation_of(current_app.view_functions.get(request.endpoint or ""))
    if record is not None and record.query is not None:
        g.ktl_query = validate_query(record.query, request.args.to_dict(flat=True))


def init_app(app: Flask) -> None:
    """Check every documented query, before any route reads its body; idempotent."""
    if app.extensions.get(_EXTENSION):
        return
    app.extensions[_EXTENSION] = True
    app.before_request(_check_query)
