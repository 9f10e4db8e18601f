"""Which version answers a request, and saying so. The path names a version, a
label, or neither: then the model's default version answers, or, for a prediction,
its canary for the canary's share of requests (a random draw per request). The
version that answered goes into the ``X-Model-Version`` header of the response and
into the metrics (``service.metrics``)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from flask import Flask, Response, g

from models.store import VERSION_PATTERN
from models.store.labels import LABEL_PATTERN
from service.contract.paths import parse_version
from service.serving.predictor import Predictor
from service.state import service_state

MODEL_VERSION_HEADER = "X-Model-Version"
VERSION_HEADER_DOC = {
    MODEL_VERSION_HEADER: {
        "description": "The version that answered",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_draws = random.Random()


@dataclass(frozen=True)
class Served:
    model: str
    version: int
    via: str  # default, canary, label or version: what the path asked for


def resolve(
    name: str, version: str | None = None, label: str | None = None, *, split: bool = False
) -> Predictor:
    """The predictor that answers this request; ``split``: a prediction, which the
    canary may take."""
    registry = service_state().registry
    if label is not None:
        predictor, via = registry.get_label(name, label), "label"
    elif version is not None:
        predictor, via = registry.get(name, parse_version(version)), "version"
    elif split:
        predictor, via = registry.route(name, _draws.random())
    else:
        predictor, via = registry.get(name), "default"
    g.ktl_served = Served(name, predictor.bundle.version, via)
    return predictor


def resolve_version_or_label(
    name: str, version: str | None = None, *, split: bool = False
) -> Predictor:
    """For the Open Inference Protocol, whose version is a string: a number, or a label
    (``/v2/models/flowers/versions/stable/infer``)."""
    if version is not None and not VERSION_PATTERN.fullmatch(version):
        if LABEL_PATTERN.fullmatch(version):
            return resolve(name, label=version, split=split)
    return resolve(name, version, split=split)


def served() -> Served | None:
    """What answered the current request, once a route resolved it."""
    return g.get("ktl_served")


def _name_the_version(response: Response) -> Response:
    answered = served()
    if answered is not None:
        response.headers[MODEL_VERSION_HEADER] = str(answered.version)
    return response


def init_app(app: Flask) -> None:
    app.after_request(_name_the_version)
