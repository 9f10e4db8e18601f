"""The web pages: try a model (``/``), read its training report, and train one
(``/train``); also a model's live monitor and the review of what it captured
(``/review``). The pages are static shells, open to anyone; their data comes from
the JSON API, which asks for the API key as it does of any client."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, send_from_directory

from models.store import validate_name
from service.contract.errors import ModelNotFound
from service.contract.operation import REPORT_KEYS, Reply, operation
from service.contract.paths import parse_version
from service.contract.replies import HTML, error, model_errors
from service.guards.redaction import metadata_roots, relative_document
from service.state import service_state

STATIC = Path(__file__).parents[1] / "static"

bp = Blueprint("web", __name__)

# The pages load only their own scripts and styles and show images they fetched
# (blob: URLs); nothing inline, nothing from elsewhere, never inside a frame.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.after_request
def page_policy(response: Response) -> Response:
    """The pages need scripts and images: a policy of their own instead of the API's."""
    if response.mimetype in ("text/html", "text/javascript", "text/css"):
        response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


def _page(name: str) -> Response:
    response = send_from_directory(STATIC, name, mimetype="text/html")
    response.cache_control.no_cache = True
    return response


@bp.get("/")
@operation(
    "page",
    summary="Web page: try a model with an image (HTML; data via this API)",
    public=True,
    responses={200: Reply("The page", content=HTML)},
)
def index() -> Response:
    return _page("index.html")


@bp.get("/models/<segment:name>/monitor")
@operation(
    "monitorPage",
    summary="Web page: a model's live figures over time, from the capture folder (HTML; data "
    "via this API)",
    public=True,
    responses={200: Reply("The page", content=HTML), 404: error("Not a model name")},
)
def monitor_page(name: str) -> Response:
    """The page is open like the others; the monitor's routes ask for a predict key."""
    validate_name(name)
    return _page("monitor.html")


@bp.get("/train")
@operation(
    "trainPage",
    summary="Web page: train a model on labelled images, follow it live (HTML; data via this API)",
    public=True,
    responses={200: Reply("The page", content=HTML)},
)
def train_page() -> Response:
    """The page is open like the others; the jobs API behind it asks for a training key."""
    return _page("train.html")


@bp.get("/review")
@operation(
    "reviewPage",
    summary="Web page: label what a model captured, one key press an image, with its "
    "Grad-CAM (HTML; data via this API)",
    public=True,
    responses={200: Reply("The page", content=HTML)},
)
def review_page() -> Response:
    """The page is open like the others; the review routes behind it ask for a training key."""
    return _page("review.html")


_BACKBONES_SCHEMA = {
    "type": "object",
    "properties": {
        "backbones": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "default_size": {"type": "integer"},
                    "imagenet": {"type": "boolean", "description": "Starts from ImageNet weights"},
                    "offline": {
                        "type": "boolean",
                        "description": "Its weights are at hand here (none needed, a package, "
                        "or Keras' cache): a job with it needs no download",
                    },
                },
            },
        }
    },
}


@bp.get("/v1/backbones")
@operation(
    "listBackbones",
    summary="The backbones a training job can use, and which of them train offline here "
    "(the train page marks them); open like the pages, whichever key the page holds",
    public=True,
    responses={
        200: Reply("The backbones", content={"application/json": {"schema": _BACKBONES_SCHEMA}})
    },
)
def backbones() -> dict[str, Any]:
    from models.networks.backbones import list_backbones
    from models.networks.classifier import weights_at_hand

    return {
        "backbones": [
            {
                "name": spec.name,
                "default_size": spec.default_size,
                "imagenet": spec.pretrained,
                "offline": weights_at_hand(spec),
            }
            for spec in list_backbones()
        ]
    }


@bp.get("/static/<path:filename>")
@operation(
    "static",
    summary="The web pages' scripts and style sheet",
    public=True,
    responses={200: Reply("The file, with its media type"), 404: error("No such file")},
)
def static(filename: str) -> Response:
    return send_from_directory(STATIC, filename)


@bp.get("/models/<segment:name>/versions/<segment:version>/report")
@operation(
    "reportPage",
    summary="Web page: the training report of one version (HTML; data via this API)",
    public=True,
    responses={200: Reply("The page", content=HTML), 404: error("Not a model name or version")},
)
def report_page(name: str, version: str) -> Response:
    """404 for what can never be a model or version; the page asks the API for the rest."""
    validate_name(name)
    parse_version(version)
    return _page("report.html")


@bp.get("/v1/models/<segment:name>/versions/<segment:version>/reports/<path:file>")
@operation(
    "reportFile",
    summary="A file of the version's reports/ (curves.png, confusion_matrix.png, "
    "metrics.json, history.csv; worst.json and worst/NN.png have routes of their own)",
    responses={
        200: Reply("The file, with its media type"),
        **model_errors(),
        404: error("Unknown model, version or report file"),
    },
)
def report_file(name: str, version: str, file: str) -> Response:
    """A file of the bundle's ``reports/``; only files its metadata lists (and checksums)."""
    return _report(name, version, file)


@bp.get("/v1/models/<segment:name>/versions/<segment:version>/reports/worst.json")
@operation(
    "reportTrainingIndex",
    summary="The held-out images the version got most wrong (reports/worst.json): file paths "
    "relative to the dataset, labels and thumbnails; training data, so it needs a key of "
    "KTL_REPORT_KEYS when that is set",
    responses={
        200: Reply("The index", content={"application/json": {"schema": {"type": "array"}}}),
        **model_errors(),
        404: error("Unknown model or version, or no such report"),
    },
    keys=REPORT_KEYS,
)
def report_training_index(name: str, version: str) -> Response:
    return _report(name, version, "worst.json")


@bp.get("/v1/models/<segment:name>/versions/<segment:version>/reports/worst/<path:file>")
@operation(
    "reportTrainingImage",
    summary="A thumbnail of a held-out image the version got most wrong (reports/worst/NN.png): "
    "training data, so it needs a key of KTL_REPORT_KEYS when that is set",
    responses={
        200: Reply("The image", content={"image/png": {"schema": {"type": "string"}}}),
        **model_errors(),
        404: error("Unknown model, version or image"),
    },
    keys=REPORT_KEYS,
)
def report_training_image(name: str, version: str, file: str) -> Response:
    return _report(name, version, f"worst/{file}")


def _report(name: str, version: str, file: str) -> Response:
    bundle = service_state().registry.get(name, parse_version(version)).bundle
    relative = f"reports/{file}"
    if relative not in bundle.metadata.files:
        raise ModelNotFound(f"Version {bundle.version} of {name!r} has no report file {file!r}")
    mimetype = mimetypes.guess_type(file)[0] or "application/octet-stream"
    body = (bundle.path / relative).read_bytes()
    if mimetype == "application/json":  # written at training time, with the paths of then
        written = json.loads(body)
        shown = relative_document(written, metadata_roots(bundle.metadata.to_json()))
        body = body if shown == written else json.dumps(shown, indent=2).encode()
    return Response(body, mimetype=mimetype)
