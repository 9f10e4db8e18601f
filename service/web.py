"""The web pages: try a model (``/``) and read its training report. The pages are
static shells; their data comes from the JSON API with the same API key rules."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from models.store import validate_name
from service.api import parse_version
from service.auth import require_api_key
from service.errors import ModelNotFound
from service.state import service_state

STATIC = Path(__file__).parent / "static"

bp = Blueprint("web", __name__, static_folder=str(STATIC), static_url_path="/static")

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
def index() -> Response:
    return _page("index.html")


@bp.get("/models/<segment:name>/versions/<segment:version>/report")
def report_page(name: str, version: str) -> Response:
    """404 for what can never be a model or version; the page asks the API for the rest."""
    validate_name(name)
    parse_version(version)
    return _page("report.html")


@bp.get("/v1/models/<segment:name>/versions/<segment:version>/reports/<path:file>")
def report_file(name: str, version: str, file: str) -> Response:
    """A file of the bundle's ``reports/``; only files its metadata lists (and checksums)."""
    require_api_key()
    bundle = service_state().registry.get(name, parse_version(version)).bundle
    relative = f"reports/{file}"
    if relative not in bundle.metadata.files:
        raise ModelNotFound(f"Version {bundle.version} of {name!r} has no report file {file!r}")
    mimetype = mimetypes.guess_type(file)[0] or "application/octet-stream"
    return Response((bundle.path / relative).read_bytes(), mimetype=mimetype)
