"""The images of an upload: files in multipart field ``image``, or a raw
``image/*`` body (the native predict, explain and activations routes)."""

from __future__ import annotations

from flask import Request

from service.contract.errors import BadRequest, UnsupportedMediaType
from service.guards.request_limits import check_image_count
from service.serving.predictor import ImageUpload


def read_images(req: Request) -> list[ImageUpload]:
    """Every uploaded image, in upload order; 400, 413 or 415 with what to send instead."""
    mimetype = req.mimetype
    if mimetype == "multipart/form-data":
        return _multipart_images(req)
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


def _multipart_images(req: Request) -> list[ImageUpload]:
    files = req.files.getlist("image")
    if not files:
        if "image" in req.form:
            raise BadRequest(
                "Field 'image' holds text, not a file: upload the file (curl -F image=@photo.jpg)"
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
