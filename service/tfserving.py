"""TensorFlow Serving's REST predict form, for clients written against it:
``{"instances": [{"b64": ...}]}`` in, ``{"predictions": [[p_0, ...]]}`` out.

Errors keep TF Serving's ``{"error": ...}`` shape (with our ``code`` after it).
Like TF Serving, a body without a JSON Content-Type is read as JSON, so
``curl -d '{"instances": ...}'`` works as it does there.
"""

from __future__ import annotations

import base64
import binascii
import json

from flask import Blueprint, Request, request

from service.api import bound_unsized_body, check_image_count, parse_version
from service.auth import require_api_key
from service.errors import BadRequest, UnsupportedMediaType
from service.predictor import ImageUpload
from service.state import service_state

bp = Blueprint("tfserving", __name__)
bp.before_request(require_api_key)
bp.before_request(bound_unsized_body)

_READ_AS_JSON = {"", "application/json", "application/x-www-form-urlencoded", "text/plain"}
_SHAPE = 'a JSON object {"instances": [{"b64": "<base64 image>"}, ...]}'


def read_instances(req: Request) -> list[ImageUpload]:
    mimetype = req.mimetype
    if mimetype not in _READ_AS_JSON and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type {mimetype!r} is not accepted here: send {_SHAPE} as "
            "application/json (images as files go to POST /v1/models/<name>/predict)"
        )
    try:
        payload = json.loads(req.get_data(cache=False))
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"The body is not valid JSON ({exc}); send {_SHAPE}") from None
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances:
        raise BadRequest(f"Missing field 'instances': send {_SHAPE}")
    check_image_count(len(instances))
    return [_decode(index, instance) for index, instance in enumerate(instances)]


def _decode(index: int, instance: object) -> ImageUpload:
    label = f"instances[{index}]"
    if isinstance(instance, dict) and isinstance(instance.get("image_bytes"), dict):
        instance = instance["image_bytes"]
    encoded = instance.get("b64") if isinstance(instance, dict) else None
    if not isinstance(encoded, str):
        raise BadRequest(
            f'{label} must be {{"b64": "<base64 image>"}} or '
            '{"image_bytes": {"b64": "<base64 image>"}}'
        )
    try:
        # Encoders that wrap lines (MIME, openssl base64) put newlines in; drop them.
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{label}: the b64 value is not valid base64") from None
    return ImageUpload(data, label=label)


@bp.post("/v1/models/<segment:name>:predict")
@bp.post("/v1/models/<segment:name>/versions/<segment:version>:predict")
def predict(name: str, version: str | None = None) -> dict:
    predictor = service_state().registry.get(name, parse_version(version))
    rows = predictor.predict(read_instances(request))
    return {"predictions": rows.tolist()}
