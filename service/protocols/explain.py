"""Seeing inside a served model: Grad-CAM heatmaps and feature-map grids. Both
run in the model's queue, one at a time, like predictions (``run_alone``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from flask import Blueprint, Response, request
from pydantic import Field

from models.insight import explain
from service.contract.errors import BadRequest, UnknownClass, UnknownLayer
from service.contract.operation import Reply, operation
from service.contract.replies import PNG, image_upload, upload_errors
from service.contract.validation import query
from service.protocols.bodies import ExplainedClass, Explanation, Maybe, RequestModel, json_body
from service.protocols.uploads import read_images
from service.serving.predictor import Predictor
from service.serving.routing import VERSION_HEADER_DOC, resolve

bp = Blueprint("explain", __name__)


class ExplainQuery(RequestModel):
    class_: Maybe[Annotated[str, Field(min_length=1)]] = Field(
        default=None,
        alias="class",
        description="The class to explain, a label or a label index (default: the "
        "predicted one). A class the model does not have is a 400 with code unknown_class.",
    )
    format: Literal["png", "json"] = Field(
        default="png", description="png: the heatmap over the image; json: the heatmap"
    )


class ActivationsQuery(RequestModel):
    layer: str = Field(
        min_length=1,
        description="A layer with feature maps. A name the model does not have is a 400 "
        "with code unknown_layer, whose message lists the valid ones.",
    )


def _one_image(predictor: Predictor) -> np.ndarray:
    images = read_images(request)
    if len(images) != 1:
        raise BadRequest(f"Send exactly one image to explain; the request holds {len(images)}")
    return predictor.preprocess(images)[0]


def _png(data: bytes) -> Response:
    return Response(data, mimetype="image/png")


@bp.post("/v1/models/<segment:name>/explain")
@bp.post("/v1/models/<segment:name>/versions/<segment:version>/explain")
@bp.post("/v1/models/<segment:name>/labels/<segment:label>/explain")
@operation(
    "explain",
    summary="Grad-CAM: where a version of the model (default, in the path, or labelled) "
    "looks for a class",
    query=ExplainQuery,
    body=image_upload(batch=False),
    responses={
        200: Reply(
            "The Grad-CAM heatmap of the image, over it (PNG) or as numbers (JSON)",
            Explanation,
            content=PNG,
            headers=VERSION_HEADER_DOC,
        ),
        **upload_errors("Not one image, not an image, or a class the model does not have"),
    },
)
def gradcam(
    name: str, version: str | None = None, label: str | None = None
) -> Response | dict[str, Any]:
    predictor = resolve(name, version, label)
    bundle = predictor.bundle
    asked = query(ExplainQuery)
    pixels = _one_image(predictor)
    try:
        chosen = explain.resolve_class(bundle.labels, asked.class_)
    except explain.ExplainError as exc:
        raise UnknownClass(str(exc)) from exc

    def explain_class() -> tuple[int, np.ndarray]:
        # Runs in the model's queue, so the forward pass here goes to the model directly.
        index = chosen
        if index is None:
            index = int(np.argmax(predictor.classifier.predict(pixels[None])[0]))
        return index, explain.gradcam(bundle.model, pixels, index)

    index, heatmap = predictor.run_alone(explain_class)
    if asked.format == "json":
        explanation = {
            "model": bundle.name,
            "version": bundle.version,
            "class": ExplainedClass(label=bundle.labels[index], index=index),
            "heatmap": np.round(heatmap, 4).tolist(),
        }
        return json_body(Explanation.model_validate(explanation))
    return _png(explain.overlay_png(pixels, heatmap))


@bp.post("/v1/models/<segment:name>/activations")
@bp.post("/v1/models/<segment:name>/versions/<segment:version>/activations")
@bp.post("/v1/models/<segment:name>/labels/<segment:label>/activations")
@operation(
    "activations",
    summary="The feature maps of one layer of a version of the model",
    query=ActivationsQuery,
    body=image_upload(batch=False),
    responses={
        200: Reply(
            "One grey tile per feature map (at most 64), each scaled to its own range",
            content=PNG,
            headers=VERSION_HEADER_DOC,
        ),
        **upload_errors("Not one image, not an image, or a layer the model does not have"),
    },
)
def activations(name: str, version: str | None = None, label: str | None = None) -> Response:
    predictor = resolve(name, version, label)
    layer = query(ActivationsQuery).layer
    model = predictor.bundle.model
    valid = explain.activation_layers(model)
    if layer not in valid:
        raise UnknownLayer(
            f"No layer {layer[:80]!r} with feature maps; choose one of: {', '.join(valid)}"
        )
    pixels = _one_image(predictor)
    maps = predictor.run_alone(lambda: explain.activations(model, pixels, layer))
    return _png(explain.activation_grid_png(maps))
