"""The bad-input corpus, generated: image files and whole HTTP requests, each with
the status API.md's table gives it. The HTTP tests (Flask test client and a live
gunicorn), ``ktl predict`` and ``ktl train`` all read it from here.

Requests are raw bytes (path with query, headers, body), so the test client and
``http.client`` against gunicorn send exactly the same thing.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

# The services under test run with these limits (Flask overrides / KTL_* variables),
# so an oversized body costs 1.5 MB, not 21.
CONFIG = {"max_upload_mb": 1.0, "max_images_per_request": 8}
ENV = {"KTL_MAX_UPLOAD_MB": "1", "KTL_MAX_IMAGES_PER_REQUEST": "8"}
LIMIT_BYTES = 1024 * 1024
MAX_IMAGES = 8
LABEL_COUNT = 3  # the tiny bundle of the tests: cat, dog, fox


@dataclass(frozen=True)
class ImageFile:
    """A file a user might upload, predict or train on."""

    filename: str
    data: bytes
    status: int  # native predict: 200, 400 (not an image / corrupt) or 413 (too many pixels)
    content_type: str = "image/png"

    @property
    def valid(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class HttpCase:
    name: str
    method: str
    path: str  # with the query string, percent-escapes as sent
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    predictions: int = 0  # for a 200 predict: how many
    top: int = 0  # for a 200 native predict: entries in each "top"


# --- images ------------------------------------------------------------------------------


def _noise(width: int = 40, height: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def crafted_png(width: int, height: int) -> bytes:
    """A valid-looking PNG whose IHDR claims ``width`` x ``height``: 60 bytes, a bomb
    of billions of pixels if anything decoded it before checking the size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + _png_chunk(b"IEND", b"")
    )


def crafted_gif(width: int, height: int) -> bytes:
    """A GIF whose logical screen and only frame claim ``width`` x ``height``."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b"\x3b"


def _bilevel_bomb() -> bytes:
    """A real 9000x8000 bilevel PNG (72 M pixels, over the 64 M default) of ~10 KB."""
    return _save(Image.new("1", (9000, 8000)), "PNG", optimize=False)


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(_noise(seed=orientation), "JPEG", exif=exif.tobytes())


def _animated(fmt: str) -> bytes:
    frames = [_noise(seed=s).convert("P") if fmt == "GIF" else _noise(seed=s) for s in range(3)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)


def _palette_with_transparency() -> bytes:
    image = _noise(seed=5).convert("P")
    return _save(image, "PNG", transparency=0)


@functools.cache
def image_files() -> tuple[ImageFile, ...]:
    """Every file of the corpus; file names are unique and say what each is."""
    png = _save(_noise(seed=1), "PNG")
    jpeg = _save(_noise(seed=2), "JPEG")
    wide = np.random.default_rng(3).integers(0, 65536, (24, 40), dtype=np.uint16)
    files = [
        # decodable: every one gets a prediction
        ImageFile("rgb.png", png, 200),
        ImageFile("rgb.jpg", jpeg, 200, "image/jpeg"),
        ImageFile("one_pixel.png", _save(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"), 200),
        ImageFile("animated.gif", _animated("GIF"), 200, "image/gif"),
        ImageFile("multipage.tiff", _animated("TIFF"), 200, "image/tiff"),
        ImageFile("cmyk.jpg", _save(_noise(seed=4).convert("CMYK"), "JPEG"), 200, "image/jpeg"),
        ImageFile("sixteen_bit.png", _save(Image.fromarray(wide), "PNG"), 200),
        ImageFile("palette_transparency.png", _palette_with_transparency(), 200),
        ImageFile("rgba.png", _save(_noise(seed=6).convert("RGBA"), "PNG"), 200),
        ImageFile("grayscale.png", _save(_noise(seed=7).convert("L"), "PNG"), 200),
        ImageFile(
            "progressive.jpg",
            _save(_noise(seed=8), "JPEG", progressive=True),
            200,
            "image/jpeg",
        ),
        ImageFile("photo.webp", _save(_noise(seed=9), "WEBP"), 200, "image/webp"),
        ImageFile("bitmap.bmp", _save(_noise(seed=10), "BMP"), 200, "image/bmp"),
        ImageFile("gif_named.jpg", _save(_noise(seed=11).convert("P"), "GIF"), 200, "image/jpeg"),
        *(
            ImageFile(f"exif_orientation_{o}.jpg", _exif_jpeg(o), 200, "image/jpeg")
            for o in range(1, 9)
        ),
        # not images, or broken ones: 400
        ImageFile("zero_bytes.jpg", b"", 400, "image/jpeg"),
        ImageFile("random_bytes.jpg", np.random.default_rng(12).bytes(2048), 400, "image/jpeg"),
        ImageFile("text.jpg", b"just some text, not a picture\n" * 4, 400, "image/jpeg"),
        ImageFile(
            "page.jpg",
            b"<!doctype html><html><body><script>alert(1)</script></body></html>",
            400,
            "image/jpeg",
        ),
        ImageFile("truncated.jpg", jpeg[: len(jpeg) // 2], 400, "image/jpeg"),
        ImageFile("truncated.png", png[: len(png) // 2], 400),
        ImageFile("png_signature_only.png", png[:8], 400),
        ImageFile("document.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", 400),
        ImageFile(
            "vector.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b'<rect width="10" height="10"/></svg>',
            400,
            "image/svg+xml",
        ),
        # decompression bombs: 413 before any pixel is decoded
        ImageFile("bomb_ihdr.png", crafted_png(30000, 30000), 413),
        ImageFile("bomb_screen.gif", crafted_gif(65535, 65535), 413, "image/gif"),
        ImageFile("bomb_bilevel.png", _bilevel_bomb(), 413),
    ]
    names = [f.filename for f in files]
    assert len(set(names)) == len(names), "corpus file names must be unique"
    return tuple(files)


# --- whole requests ----------------------------------------------------------------------

_BOUNDARY = "ktlcorpusboundary7d3f"


def multipart(parts: list[tuple[str, str | None, bytes, str | None]]) -> tuple[bytes, str]:
    """``(field, filename or None for a text field, data, content type)`` parts as a
    multipart/form-data body; returns ``(body, content_type)``."""
    chunks = []
    for field, filename, data, content_type in parts:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        head = f"--{_BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        chunks.append(head.encode() + b"\r\n" + data + b"\r\n")
    chunks.append(f"--{_BOUNDARY}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={_BOUNDARY}"


def _upload(case: str, path: str, status: int, parts, predictions: int = 0, top: int = 0):
    body, content_type = multipart(parts)
    return HttpCase(
        case, "POST", path, status, body, (("Content-Type", content_type),), predictions, top
    )


def _raw(case: str, path: str, status: int, body: bytes, content_type: str | None, **expect):
    headers = (("Content-Type", content_type),) if content_type is not None else ()
    return HttpCase(case, "POST", path, status, body, headers, **expect)


def _json(case: str, path: str, status: int, payload, predictions: int = 0):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return HttpCase(
        case, "POST", path, status, body, (("Content-Type", "application/json"),), predictions
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def http_cases(model: str = "tiny") -> list[HttpCase]:
    """Every request of the corpus against a service whose ``model`` has 3 labels
    and one version, running with ``CONFIG``'s limits."""
    predict = f"/v1/models/{model}/predict"
    tfs = f"/v1/models/{model}:predict"
    png = image_files()[0].data
    top = min(5, LABEL_COUNT)
    cases: list[HttpCase] = []

    # every corpus file three ways: multipart upload, raw body, TF Serving base64
    for file in image_files():
        stem = file.filename
        expect = {"predictions": 1, "top": top} if file.valid else {}
        cases.append(
            _upload(
                f"multipart {stem}", predict, file.status,
                [("image", file.filename, file.data, file.content_type)], **expect,
            )
        )  # fmt: skip
        cases.append(
            _raw(f"raw {stem}", predict, file.status, file.data, file.content_type, **expect)
        )
        cases.append(
            _json(
                f"b64 {stem}", tfs, file.status,
                {"instances": [{"b64": _b64(file.data)}]}, 1 if file.valid else 0,
            )
        )  # fmt: skip

    raw_png = {"body": png, "content_type": "image/png"}

    # top_k
    # (gunicorn answers a request line over 4094 bytes itself, with an HTML 414)
    for value in ("0", "-1", "abc", "1.5", "", "1e3", "%00", "9" * 3000 + "x", "2%2C3"):
        short = value if len(value) <= 12 else f"{value[:4]}... ({len(value)} chars)"
        cases.append(_raw(f"top_k={short}", f"{predict}?top_k={value}", 400, **raw_png))
    cases.append(
        _raw(
            "top_k 3000 digits",
            f"{predict}?top_k={'9' * 3000}",
            200,
            **raw_png,
            predictions=1,
            top=3,
        )
    )
    cases.append(_raw("top_k=2", f"{predict}?top_k=2", 200, **raw_png, predictions=1, top=2))
    cases.append(
        _raw("top_k clipped", f"{predict}?top_k=100000", 200, **raw_png, predictions=1, top=3)
    )

    # multipart fields
    image_part = ("image", "a.png", png, "image/png")
    cases += [
        _upload("field named file", predict, 400, [("file", "a.png", png, "image/png")]),
        _upload("image as a text field", predict, 400, [("image", None, b"a.png", None)]),
        _upload("no parts at all", predict, 400, []),
        _upload(
            "extra fields",
            predict,
            200,
            [("note", None, b"hello", None), image_part, ("other", "b.txt", b"x", "text/plain")],
            predictions=1,
            top=top,
        ),
        _upload("two images", predict, 200, [image_part, image_part], predictions=2, top=top),
        _upload(f"{MAX_IMAGES} images", predict, 200, [image_part] * MAX_IMAGES, MAX_IMAGES, top),
        _upload(f"{MAX_IMAGES + 1} images", predict, 413, [image_part] * (MAX_IMAGES + 1)),
        _upload("a good and a bad image", predict, 400, [image_part, ("image", "x.jpg", b"x", "")]),
        _raw("multipart without boundary", predict, 400, b"--x\r\n", "multipart/form-data"),
        _upload("too many parts", predict, 413, [image_part] + [("f", None, b"1", None)] * 1100),
    ]

    # bodies over KTL_MAX_UPLOAD_MB (1 MB here)
    big = png + b"\0" * (LIMIT_BYTES + LIMIT_BYTES // 2)
    cases += [
        _raw("oversized raw body", predict, 413, big, "image/png"),
        _upload("oversized multipart", predict, 413, [("image", "big.png", big, "image/png")]),
        _json("oversized json", tfs, 413, {"instances": [{"b64": _b64(big)}]}),
    ]

    # content types
    for content_type in (
        "text/plain", "application/xml", "application/json", "application/octet-stream",
        "application/x-www-form-urlencoded", "image", None,
    ):  # fmt: skip
        cases.append(_raw(f"native as {content_type}", predict, 415, png, content_type))
    for content_type in ("image/png", "multipart/form-data", "application/xml"):
        cases.append(_raw(f"tf-serving as {content_type}", tfs, 415, png, content_type))

    # TF Serving JSON bodies
    good = _b64(png)
    cases += [
        _json("json not json", tfs, 400, b"{not json"),
        _json("json empty body", tfs, 400, b""),
        _json("json invalid utf-8", tfs, 400, b'\xff\xfe{"instances": []}'),
        _json("json null", tfs, 400, None),
        _json("json a list", tfs, 400, [{"b64": good}]),
        _json("json no instances", tfs, 400, {"inputs": [{"b64": good}]}),
        _json("json empty instances", tfs, 400, {"instances": []}),
        _json("json instances object", tfs, 400, {"instances": {"b64": good}}),
        _json("json b64 a number", tfs, 400, {"instances": [{"b64": 12345}]}),
        _json("json bad base64", tfs, 400, {"instances": [{"b64": "not base64!!"}]}),
        _json("json base64 bad padding", tfs, 400, {"instances": [{"b64": "abc"}]}),
        _json("json base64 of text", tfs, 400, {"instances": [{"b64": _b64(b"hello")}]}),
        _json("json deep nesting", tfs, 400, b"[" * 100_000 + b"]" * 100_000),
        _json(
            "json image_bytes form", tfs, 200, {"instances": [{"image_bytes": {"b64": good}}]}, 1
        ),
        _json("json line-wrapped base64", tfs, 200, {"instances": [{"b64": _wrap(good)}]}, 1),
        _json("json too many instances", tfs, 413, {"instances": [{"b64": good}] * 9}),
    ]

    # model names and versions: never a path outside the store, always 404
    long_name = "a" * 1000
    for name in (
        "..", "%2e%2e", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "..%2F..%2Fetc", ".staging", ".jobs",
        "TINY", f"{model}%00", f"{model}%0A", "%C3%A9t%C3%A9", long_name, "a" * 65, "-x", "_x",
        "%252e%252e", "...", "~root",
    ):  # fmt: skip
        short = name if len(name) <= 24 else f"{name[:8]}... ({len(name)} chars)"
        cases.append(_raw(f"name {short}", f"/v1/models/{name}/predict", 404, **raw_png))
        cases.append(HttpCase(f"metadata {short}", "GET", f"/v1/models/{name}", 404))
    for version in ("0", "-1", "01", "1e3", "2", "99999999999999999999999", "1.0", "%2e%2e"):
        cases.append(
            _raw(
                f"version {version}",
                f"/v1/models/{model}/versions/{version}/predict",
                404,
                **raw_png,
            )
        )
    cases += [
        HttpCase("dot segments", "GET", "/v1/models/../../etc/passwd", 404),
        HttpCase("unknown route", "GET", "/v2/models", 404),
        HttpCase("get on predict", "GET", predict, 405),
        HttpCase("put on models", "PUT", "/v1/models", 405),
        HttpCase("delete a model", "DELETE", f"/v1/models/{model}", 405),
    ]
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), "corpus case names must be unique"
    return cases


def _wrap(text: str, width: int = 76) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def check_response(case: HttpCase, status: int, content_type: str, body: bytes) -> None:
    """Assert what a user of the API sees: the status, a JSON body, and for a
    prediction valid probabilities; for an error ``{"error": ..., "code": ...}``."""
    assert status == case.status, f"{case.name}: {status} != {case.status}: {body[:300]!r}"
    assert content_type.split(";")[0].strip() == "application/json", (case.name, content_type)
    payload = json.loads(body)
    if status >= 400:
        assert isinstance(payload.get("error"), str) and payload["error"], (case.name, payload)
        assert isinstance(payload.get("code"), str) and payload["code"], (case.name, payload)
        return
    if case.predictions == 0:
        return
    if "instances" in case.body.decode(errors="replace")[:20] or case.path.endswith(":predict"):
        rows = payload["predictions"]
        assert len(rows) == case.predictions, (case.name, payload)
        for row in rows:
            assert len(row) == LABEL_COUNT and abs(sum(row) - 1) < 1e-4, (case.name, row)
        return
    predictions = payload["predictions"]
    assert len(predictions) == case.predictions, (case.name, payload)
    for prediction in predictions:
        probabilities = list(prediction["probabilities"].values())
        assert len(probabilities) == LABEL_COUNT and abs(sum(probabilities) - 1) < 1e-4
        ranked = [entry["probability"] for entry in prediction["top"]]
        assert len(ranked) == case.top and ranked == sorted(ranked, reverse=True), case.name
