"""Seeing inside a served model: Grad-CAM heatmaps and feature-map grids."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, request

from models import explain
from service.api import bound_unsized_body, parse_version, read_images
from service.auth import require_api_key
from service.errors import BadRequest
from service.predictor import Predictor
from service.state import service_state

bp = Blueprint("explain", __name__)
bp.before_request(require_api_key)
bp.before_request(bound_unsized_body)


def _one_image(predictor: Predictor) -> np.ndarray:
    images = read_images(request)
    if len(images) != 1:
        raise BadRequest(f"Send exactly one image to explain; the request holds {len(images)}")
    return predictor.preprocess(images)[0]


def _png(data: bytes) -> Response:
    return Response(data, mimetype="image/png")


@bp.post("/v1/models/<segment:name>/explain")
@bp.post("/v1/models/<segment:name>/versions/<segment:version>/explain")
def gradcam(name: str, version: str | None = None):
    predictor = service_state().registry.get(name, parse_version(version))
    bundle = predictor.bundle
    output = request.args.get("format", "png")
    if output not in ("png", "json"):
        raise BadRequest(f"format must be png or json; got {output[:20]!r}")
    pixels = _one_image(predictor)
    try:
        chosen = explain.resolve_class(bundle.labels, request.args.get("class"))
    except explain.ExplainError as exc:
        raise BadRequest(str(exc)) from exc

    def explain_class() -> tuple[int, np.ndarray]:
        # Runs in the model's queue, so the forward pass here goes to the model directly.
        index = chosen
        if index is None:
            index = int(np.argmax(predictor.classifier.predict(pixels[None])[0]))
        return index, explain.gradcam(bundle.model, pixels, index)

    index, heatmap = predictor.run_alone(explain_class)
    if output == "json":
        return {
            "model": bundle.name,
            "version": bundle.version,
            "class": {"label": bundle.labels[index], "index": index},
            "heatmap": np.round(heatmap, 4).tolist(),
        }
    return _png(explain.overlay_png(pixels, heatmap))


@bp.post("/v1/models/<segment:name>/activations")
@bp.post("/v1/models/<segment:name>/versions/<segment:version>/activations")
def activations(name: str, version: str | None = None):
    predictor = service_state().registry.get(name, parse_version(version))
    layer = request.args.get("layer")
    model = predictor.bundle.model
    if not layer:
        raise BadRequest(
            "Query parameter 'layer' is required; choose one of: "
            + ", ".join(explain.activation_layers(model))
        )
    pixels = _one_image(predictor)
    try:
        maps = predictor.run_alone(lambda: explain.activations(model, pixels, layer))
    except explain.ExplainError as exc:
        raise BadRequest(str(exc)) from exc
    return _png(explain.activation_grid_png(maps))
