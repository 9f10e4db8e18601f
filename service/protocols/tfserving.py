"""TensorFlow Serving's REST predict form, for clients written against it:
``{"instances": [{"b64": ...}]}`` in, ``{"predictions": [[p_0, ...]]}`` out.

Errors keep TF Serving's ``{"error": ...}`` shape (with our ``code`` after it).
Like TF Serving, a body without a JSON Content-Type is read as JSON, so
``curl -d '{"instances": ...}'`` works as it does there.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Request, request

from models.decision import threshold_of
from models.ids import new_id
from models.predictions import served_decisions
from service.contract.errors import UnsupportedMediaType
from service.contract.operation import Body, Reply, operation
from service.contract.replies import upload_errors
from service.contract.validation import validate_json
from service.guards.request_limits import check_image_count
from service.monitoring.capture import observe_batch
from service.protocols.bodies import json_body
from service.protocols.tfserving_bodies import TFServingError, TFServingRequest, TFServingResponse
from service.serving.predictor import ImageUpload
from service.serving.routing import VERSION_HEADER_DOC, resolve

bp = Blueprint("tfserving", __name__)

_READ_AS_JSON = {"", "application/json", "application/x-www-form-urlencoded", "text/plain"}
_SHAPE = 'send a JSON object {"instances": [{"b64": "<base64 image>"}, ...]}'


def read_instances(req: Request) -> list[ImageUpload]:
    mimetype = req.mimetype
    if mimetype not in _READ_AS_JSON and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type {mimetype!r} is not accepted here: {_SHAPE} as "
            "application/json (images as files go to POST /v1/models/<name>/predict)"
        )
    body = validate_json(TFServingRequest, req.get_data(cache=False), hint=_SHAPE)
    check_image_count(len(body.instances))
    return [
        ImageUpload(instance.data, label=f"instances[{index}]")
        for index, instance in enumerate(body.instances)
    ]


@bp.post("/v1/models/<segment:name>:predict")
@bp.post("/v1/models/<segment:name>/versions/<segment:version>:predict")
@bp.post("/v1/models/<segment:name>/labels/<segment:label>:predict")
@operation(
    "tfServingPredict",
    summary="TensorFlow Serving REST predict: the default version (or the canary, for its "
    "share), the version in the path, or the version a label points at",
    body=Body(TFServingRequest),
    error_body=TFServingError,
    responses={
        200: Reply(
            "Probabilities in label order, one row per instance",
            TFServingResponse,
            headers=VERSION_HEADER_DOC,
        ),
        **upload_errors(
            "Bad JSON, base64 or instances, not an image or a corrupt one", TFServingError
        ),
    },
)
def predict(name: str, version: str | None = None, label: str | None = None) -> dict[str, Any]:
    predictor = resolve(name, version, label, split=True)
    instances = read_instances(request)
    rows = predictor.predict(instances)
    bundle = predictor.bundle
    decisions = served_decisions(bundle, rows)
    ids = [new_id() for _ in decisions]
    threshold = threshold_of(bundle.metadata.decision)
    observe_batch(predictor, [instance.data for instance in instances], rows, ids, threshold)
    return json_body(TFServingResponse(predictions=rows.tolist(), decisions=decisions, ids=ids))
