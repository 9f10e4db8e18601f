"""Bearer API keys, checked once for the whole app: every route needs a key of
its key set (``@operation(keys=...)``, default the predict keys of
``KTL_API_KEYS``) unless its view is marked ``public``. A view with no
``@operation`` needs the predict keys, so a forgotten marker never opens a route.
A key set with no keys configured is open. A path no route matches (404, 405)
needs no key: there is nothing behind it."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any

from flask import Flask, current_app, request

from service.contract.errors import Unauthorized
from service.contract.operation import PREDICT_KEYS, KeySet, operation_of
from service.state import service_state

_EXTENSION = "ktl.auth"


def _required_keys() -> KeySet | None:
    """The key set the matched route needs; None for a public route or no route."""
    if request.url_rule is None:
        return None
    return keys_of_view(current_app.view_functions.get(request.endpoint or ""))


def keys_of_view(view: Callable[..., Any] | None) -> KeySet | None:
    """The key set a view needs: its ``@operation``'s, the predict keys without one;
    None when it is public. (gRPC asks this of the REST view each call mirrors.)"""
    record = operation_of(view)
    if record is None:
        return PREDICT_KEYS
    return None if record.public else record.keys


def require_key() -> None:
    """A ``before_request`` hook: 401 unless the route is open or a key of its set is sent."""
    key_set = _required_keys()
    if key_set is not None:
        check_bearer(key_set.keys(service_state().config))


def check_bearer(keys: Sequence[str]) -> None:
    """Pass when ``keys`` is empty or the request's bearer token is one of them."""
    check_authorization(request.headers.get("Authorization", ""), keys)


def check_authorization(authorization: str, keys: Sequence[str]) -> None:
    """Pass when ``keys`` is empty or ``authorization`` (an HTTP header's or gRPC
    metadata's value) is ``Bearer <one of them>``; ``Unauthorized`` otherwise."""
    if not keys:
        return
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "This route needs an API key: send the header 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="ktl"'},
        )
    # Compare against every key, without stopping at a match, so timing says nothing.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(
            token.encode("utf-8", "surrogateescape"), key.encode("utf-8", "surrogateescape")
        )
    if not matched:
        raise Unauthorized(
            "The API key is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="ktl", error="invalid_token"'},
        )


def init_app(app: Flask) -> None:
    """Guard every route of ``app``; idempotent."""
    if app.extensions.get(_EXTENSION):
        return
    app.extensions[_EXTENSION] = True
    app.before_request(require_key)
