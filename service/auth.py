"""Optional bearer API keys (``KTL_API_KEYS``) for the model, predict and metrics routes."""

from __future__ import annotations

import hmac

from flask import request

from service.errors import Unauthorized
from service.state import service_state


def require_api_key() -> None:
    """A ``before_request`` hook: passes when no keys are configured or a key matches."""
    keys = service_state().config.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
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
