"""Schemathesis hooks for tests/e2e/test_schemathesis_e2e.py (SCHEMATHESIS_HOOKS).

``positive_data_acceptance`` (a request the document allows must not be refused)
with the few refusals the document can only state in words, each told apart by
its own error code and described in the document where it applies.
"""

from __future__ import annotations

import json

import schemathesis
from schemathesis.checks import positive_data_acceptance

REFUSED_FOR_REASONS_OPENAPI_CANNOT_STATE = {
    # Image bytes: OpenAPI says "binary" or "base64", not "a picture Pillow can decode";
    # random bytes are rightly refused, and the pixel limit is about the decoded size.
    (400, "invalid_image"),
    (413, "image_too_large"),
    # A KServe tensor: 'data' must hold as many elements as the product of 'shape', and
    # UINT8 pixels must be at the model's height and width (a property of the model).
    (400, "shape_mismatch"),
    # The binary data extension: the JSON part's length and each binary_data_size must
    # match the bytes that follow, which a schema of the body cannot count.
    (400, "invalid_binary_data"),
    # Query values naming the model's own labels and layers: they differ per model.
    (400, "unknown_class"),
    (400, "unknown_layer"),
}


def error_code(response: schemathesis.Response) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


@schemathesis.check
def positive_data_acceptance_but_what_openapi_cannot_state(ctx, response, case):
    refusal = (response.status_code, error_code(response))
    if refusal in REFUSED_FOR_REASONS_OPENAPI_CANNOT_STATE:
        return None
    return positive_data_acceptance(ctx, response, case)
