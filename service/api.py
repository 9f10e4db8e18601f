"""The native routes: model listing and metadata, and predict."""

from __future__ import annotations

import io

from flask import Blueprint, Request, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from models.store import VERSION_PATTERN
from service.auth import require_api_key
from service.errors import BadRequest, ModelNotFound, PayloadTooLarge, UnsupportedMediaType
from service.predictor import ImageUpload
from service.registry import ModelState
from service.state import service_state

bp = Blueprint("api", __name__)


def bound_unsized_body() -> None:
    """A ``before_request`` hook: a chunked body over the upload limit is a 413.

    Gunicorn marks chunked bodies (no Content-Length) ``wsgi.input_terminated``,
    and for those werkzeug only cuts the stream at MAX_CONTENT_LENGTH, silently:
    the route would see the first megabytes as if they were the whole upload. So
    read such a body here, at most one byte past the limit, and hand the routes a
    sized copy.
    """
    environ = request.environ
    limit = request.max_content_length
    if limit is None or request.content_length is not None:
        return
    if not environ.get("wsgi.input_terminated"):
        return  # werkzeug then reads no body at all: nothing unbounded
    stream = environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(1 << 16, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(b"".join(chunks))
    environ["CONTENT_LENGTH"] = str(size)


bp.before_request(require_api_key)
bp.before_request(bound_unsized_body)


class SegmentConverter(BaseConverter):
    """One path segment without ':', so ``/v1/models/m:predict`` is never read as a
    model named ``m:predict`` (a GET there gets 405, not 404)."""

    regex = "[^/:]+"


def parse_version(text: str | None) -> int | None:
    """A version from the URL; anything but a positive integer names no version."""
    if text is None:
        return None
    if not VERSION_PATTERN.fullmatch(text):
        raise ModelNotFound(f"{text[:40]!r} is not a version: versions are 1, 2, 3 ...")
    return int(text)


def parse_top_k(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        top_k = int(raw)
    except ValueError:
        top_k = 0
    if top_k < 1:
        raise BadRequest(f"top_k must be a whole number, 1 or more; got {raw[:40]!r}")
    return top_k


def check_image_count(count: int) -> None:
    limit = service_state().config.max_images_per_request
    if count > limit:
        raise PayloadTooLarge(
            f"The request holds {count} images; at most {limit} are allowed in one request "
            "(KTL_MAX_IMAGES_PER_REQUEST): split it"
        )


def read_images(req: Request) -> list[ImageUpload]:
    """The images of a native predict request: multipart field ``image`` or a raw body."""
    mimetype = req.mimetype
    if mimetype == "multipart/form-data":
        files = req.files.getlist("image")
        if not files:
            if "image" in req.form:
                raise BadRequest(
                    "Field 'image' holds text, not a file: upload the file "
                    "(curl -F image=@photo.jpg)"
                )
            fields = sorted({*req.files, *req.form})
            other = f"; the request has fields {fields}" if fields else ""
            raise BadRequest(
                "Missing field 'image': send each image as a file in multipart field 'image' "
                f"(curl -F image=@photo.jpg){other}"
            )
        check_image_count(len(files))
        return [
            ImageUpload(
                file.read(),
                label=f"file {file.filename!r}" if file.filename else f"image {index}",
                filename=file.filename or None,
            )
            for index, file in enumerate(files, start=1)
        ]
    if mimetype.startswith("image/"):
        return [ImageUpload(req.get_data(cache=False))]
    hint = (
        "; JSON bodies go to POST /v1/models/<name>:predict"
        if mimetype == "application/json"
        else ""
    )
    raise UnsupportedMediaType(
        f"Content-Type {mimetype or '(none)'!r} is not accepted here: send multipart/form-data "
        "with the image in field 'image', or the image itself with its image/* Content-Type"
        f"{hint}"
    )


def _summary(state: ModelState) -> dict:
    metadata = state.default.bundle.metadata if state.default is not None else None
    return {
        "name": state.name,
        "versions": list(state.versions),
        "default_version": state.default_version,
        "labels": list(metadata.labels) if metadata else None,
        "backbone": metadata.backbone if metadata else None,
        "image_size": list(metadata.image_size) if metadata else None,
        "status": "available" if state.default is not None else "unavailable",
        "unavailable_versions": [
            {"version": version, "reason": failure.reason}
            for version, failure in sorted(state.failures.items())
        ],
    }


@bp.get("/v1/models")
def list_models() -> dict:
    models = service_state().registry.snapshot.models
    return {"models": [_summary(models[name]) for name in sorted(models)]}


@bp.get("/v1/models/<segment:name>")
@bp.get("/v1/models/<segment:name>/versions/<segment:version>")
def model_metadata(name: str, version: str | None = None) -> dict:
    return service_state().registry.get(name, parse_version(version)).bundle.metadata.to_json()


@bp.post("/v1/models/<segment:name>/predict")
@bp.post("/v1/models/<segment:name>/versions/<segment:version>/predict")
def predict(name: str, version: str | None = None) -> dict:
    state = service_state()
    predictor = state.registry.get(name, parse_version(version))
    top_k = parse_top_k(request.args.get("top_k"), state.config.top_k)
    return predictor.predict_native(read_images(request), top_k).model_dump(mode="json")
