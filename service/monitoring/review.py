"""Review over HTTP, what the ``/review`` page reads and writes: the captured
predictions of a model in the order to label them (``models.capture.review.queue``),
each captured image, and a person's label for one (``record_review``, ``by="page"``).

A review shows captured images and writes training data, so it needs the training
keys (``KTL_TRAIN_KEYS``) and is off (403) where training over HTTP is off, as the
jobs API is (``KTL_TRAINING=open`` opens both). With capture off it answers 409, as
the monitor does. No server path leaves it: an item's image is a URL of this API.
"""

from __future__ import annotations

import mimetypes
from typing import Annotated, Any
from urllib.parse import quote

from flask import Blueprint, Response, request
from pydantic import Field

from models.capture.review import NotCaptured, find_capture, queue, record_and_count, reviews
from models.ids import ID_PATTERN
from service.contract.operation import TRAIN_KEYS, Body, Reply, operation
from service.contract.replies import error
from service.contract.validation import query, validate_json
from service.jobs_api.jobs import TrainingOff
from service.monitoring.monitor import ERRORS, capture_folder, model_state
from service.protocols.bodies import Maybe, RequestModel, ResponseModel, json_body
from service.state import service_state

bp = Blueprint("review", __name__)

REVIEW_OFF = (
    "Review is off on this service: it needs the training keys. Set KTL_TRAIN_KEYS to the "
    "keys that may review and train (then send 'Authorization: Bearer <key>'), or "
    "KTL_TRAINING=open on a service only you can reach; see docs/monitoring.md"
)


class ReviewQuery(RequestModel):
    limit: Maybe[Annotated[int, Field(ge=1, le=1000)]] = Field(
        default=None, description="Items answered at most, first in the queue first (default 50)"
    )
    include_done: bool = Field(
        default=False, description="Also the items whose every member has a label already"
    )


class ReviewItem(ResponseModel):
    id: str = Field(description="The id of the prediction shown for the item")
    time: str | None
    version: int | None = Field(description="The version that made the prediction")
    predicted: str | None = Field(description="Its top label")
    decision: str | None = Field(description="The label it answered; null: it abstained")
    abstained: bool
    confidence: float = Field(description="Its top probability")
    probabilities: dict[str, float] | None
    labels: list[str] = Field(description="The labels a review may give, the version's")
    image: str = Field(description="The captured image's URL in this API")
    near_duplicates: list[str] = Field(
        description="Ids of the look-alikes a label for this item is recorded for too"
    )
    reviewed: str | None = Field(description="The label given already, if any")


class ReviewQueue(ResponseModel):
    model: str
    left: int = Field(description="Items still without a label")
    reviewed: int = Field(description="Captured predictions labelled so far")
    items: list[ReviewItem]


class ReviewRequest(RequestModel):
    id: str = Field(pattern=ID_PATTERN.pattern, description="A captured prediction's id")
    label: str = Field(min_length=1, description="The true label, one of the version's")


class ReviewAnswer(ResponseModel):
    model: str
    id: str
    label: str
    labelled: list[str] = Field(description="The ids labelled: the item's and its look-alikes'")
    left: int = Field(description="Items still without a label")


_REVIEW_ERRORS = {
    401: error("A training key is needed (KTL_TRAIN_KEYS)"),
    403: error("Review is off on this service (no training keys); the message says how"),
    **ERRORS,
}


@bp.before_request
def _review_on() -> None:
    if not service_state().config.training_enabled:
        raise TrainingOff(REVIEW_OFF)


def _image_url(name: str, identifier: str) -> str:
    return f"/v1/models/{quote(name, safe='')}/review/{identifier}/image"


@bp.get("/v1/models/<segment:name>/review")
@operation(
    "reviewQueue",
    summary="The captured predictions in the order to label them: abstained first, then the "
    "least confident, look-alikes as one item; needs a training key",
    query=ReviewQuery,
    keys=TRAIN_KEYS,
    responses={200: Reply("The queue, and how far the review is", ReviewQueue), **_REVIEW_ERRORS},
)
def review_queue(name: str) -> dict[str, Any]:
    folder, _ = capture_folder(), model_state(name)
    asked = query(ReviewQuery)
    every = queue(folder, name, include_done=True)
    shown = every if asked.include_done else [item for item in every if not item.done]
    items = [
        ReviewItem(**{**item.to_json(), "image": _image_url(name, item.shown.id)})
        for item in shown[: asked.limit or 50]
    ]
    return json_body(
        ReviewQueue(
            model=name,
            left=sum(not item.done for item in every),
            reviewed=len(reviews(folder, name)),
            items=items,
        )
    )


@bp.get("/v1/models/<segment:name>/review/<segment:identifier>/image")
@operation(
    "reviewImage",
    summary="A captured image of the model, as it was sent; needs a training key",
    keys=TRAIN_KEYS,
    responses={
        200: Reply("The image, with its media type", content={"image/*": {"schema": {}}}),
        **_REVIEW_ERRORS,
        404: error("Unknown model, or no captured prediction of it with this id"),
    },
)
def review_image(name: str, identifier: str) -> Response:
    folder, _ = capture_folder(), model_state(name)
    found = find_capture(folder, name, identifier)
    if found is None:
        raise NotCaptured(f"No captured image {identifier!r} of model {name!r}")
    mimetype = mimetypes.guess_type(found.image.name)[0] or "application/octet-stream"
    response = Response(found.image.read_bytes(), mimetype=mimetype)
    response.cache_control.private = True
    return response


@bp.post("/v1/models/<segment:name>/review")
@operation(
    "review",
    summary="A person's label for a captured prediction, recorded for its look-alikes too "
    "(what ktl train --add-reviewed learns from); needs a training key",
    body=Body(ReviewRequest),
    keys=TRAIN_KEYS,
    responses={
        200: Reply("The ids labelled", ReviewAnswer),
        400: error("A bad body, or a label the prediction's version does not have"),
        **_REVIEW_ERRORS,
        404: error("Unknown model, or no captured prediction of it with this id"),
    },
)
def review(name: str) -> dict[str, Any]:
    folder, _ = capture_folder(), model_state(name)
    body = validate_json(ReviewRequest, request.get_data(cache=False))
    labelled, left = record_and_count(folder, name, body.id, body.label, by="page")
    return json_body(
        ReviewAnswer(model=name, id=body.id, label=body.label, labelled=labelled, left=left)
    )
