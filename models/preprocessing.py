"""The one image preprocessing function shared by training and serving.

Bytes or a path go in; an ``(height, width, 3)`` uint8 RGB array at the
bundle's size comes out. Everything that depends on the backbone (scaling,
mean subtraction, channel order) lives inside the model as a layer, so this
function only has to agree with itself, and it is the only one there is.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.errors import UserError

# Recorded in every bundle's metadata.json so a reader knows how pixels were made.
RESIZE_POLICY = {
    "method": "bilinear",
    "reducing_gap": 3.0,
    "keep_aspect_ratio": False,
    "exif_transpose": True,
    "jpeg_draft": True,
    "alpha": "composited on white",
    "frames": "first frame of animated or multi-page images",
}

REDUCING_GAP = 3.0

_T = TypeVar("_T")
_R = TypeVar("_R")

# Files with other suffixes are not images and are ignored (README.txt, .DS_Store ...).
IMAGE_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .jfif .png .gif .bmp .dib .tif .tiff .webp .ppm .pgm .pbm .pnm".split()
)


def is_image_name(path: Path) -> bool:
    """Whether a file's name says it is an image (hidden files are not)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def image_files(paths: list[Path]) -> list[Path]:
    """The files given, and the image files under each folder given (recursively,
    sorted); files given by name are kept whatever their suffix."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
        else:
            found.append(path)
    return found


# Guard against decompression bombs: a 12-megapixel photo is fine, a
# 50000x50000 PNG of zeros that inflates to 7.5 GB is not.
DEFAULT_MAX_PIXELS = 64_000_000

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class ImageError(UserError, ValueError):
    """An image that cannot be used; the message says why."""

    code = "invalid_image"


class InvalidImage(ImageError):
    """Not an image, or an image that cannot be decoded."""


class ImageTooLarge(ImageError):
    """An image with more pixels than the configured limit (a decompression-bomb guard)."""

    status = 413
    code = "image_too_large"


def load_image(
    source: bytes | str | Path,
    size: tuple[int, int],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """Decode ``source`` into a ``(height, width, 3)`` uint8 RGB array of ``size``.

    ``size`` is ``(height, width)``. Raises ``InvalidImage`` or ``ImageTooLarge``,
    whose messages start with ``name`` (default: the path, or "uploaded image").
    """
    name = name or _name(source)
    height, width = size
    # The context closes the file itself: Pillow keeps it open after load() for
    # animated and multi-page images, and every later image here is a copy.
    with _open(source, max_pixels, name) as opened:
        try:
            _draft(opened, width, height)
            opened.load()
            ImageOps.exif_transpose(opened, in_place=True)  # no copy when upright
            return _resized(_to_rgb(opened), width, height)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImage(f"{name}: the image data is truncated or corrupt ({exc})") from exc


@dataclass(frozen=True)
class DecodedImage:
    position: int  # the file's place in the paths given to decode_images
    path: Path
    pixels: np.ndarray
    data: bytes | None = None  # the file's bytes, when decode_images kept them


@dataclass(frozen=True)
class SkippedImage:
    position: int
    path: Path
    reason: str  # the error's message, which starts with the file's name
    code: str = "invalid_image"  # the error's machine code (models.errors), as HTTP gives it

    def record(self) -> dict[str, str]:
        """The ``{"path", "reason"}`` entry reports and logs list skipped files with."""
        return {"path": str(self.path), "reason": self.reason}


def decode_images(
    paths: Iterable[str | Path],
    size: tuple[int, int],
    skipped: Callable[[SkippedImage], None],
    *,
    keep_bytes: bool = False,
    threads: int = 1,
) -> Iterator[DecodedImage]:
    """Decode each of ``paths`` with ``load_image`` at ``size``, in order. A file that
    cannot be read or decoded is left out and handed to ``skipped``, with the reason,
    in its place in the order. ``keep_bytes``: each image carries its file's bytes
    (read once, decoded from them). ``threads`` > 1 decodes that many at a time."""

    def decode(path: Path) -> tuple[np.ndarray, bytes | None]:
        if not keep_bytes:
            return load_image(path, size), None
        data = path.read_bytes()
        return load_image(data, size, name=str(path)), data

    for position, path, (pixels, data) in decode_each(paths, decode, skipped, threads=threads):
        yield DecodedImage(position, path, pixels, data)


def decode_each(
    paths: Iterable[str | Path],
    decode: Callable[[Path], _T],
    skipped: Callable[[SkippedImage], None],
    *,
    threads: int = 1,
    errors: tuple[type[Exception], ...] = (ImageError, OSError),
) -> Iterator[tuple[int, Path, _T]]:
    """The loop of ``decode_images`` with another ``decode``: ``(position, path,
    decode(path))`` for each file, in order; a file whose ``decode`` raises one of
    ``errors`` goes to ``skipped`` instead, in its place in the order."""

    def attempt(item: tuple[int, str | Path]) -> tuple[int, Path, _T] | SkippedImage:
        position, path = item[0], Path(item[1])
        try:
            return position, path, decode(path)
        except errors as exc:
            return SkippedImage(position, path, str(exc), getattr(exc, "code", "unreadable"))

    if threads <= 1:
        yield from _reported(map(attempt, enumerate(paths)), skipped)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        yield from _reported(pool.map(attempt, enumerate(paths)), skipped)


def _reported(
    results: Iterable[_R | SkippedImage], skipped: Callable[[SkippedImage], None]
) -> Iterator[_R]:
    for result in results:
        if isinstance(result, SkippedImage):
            skipped(result)
        else:
            yield result


def load_for_display(source: bytes | str | Path, max_side: int = 1024) -> np.ndarray:
    """The image as a person sees it: upright, RGB, its own aspect ratio, at most
    ``max_side`` pixels on its longer side (explanations are drawn over this)."""
    name = _name(source)
    with _open(source, DEFAULT_MAX_PIXELS, name) as opened:
        try:
            _draft(opened, max_side, max_side)
            opened.load()
            ImageOps.exif_transpose(opened, in_place=True)
            image = _to_rgb(opened)
            image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImage(f"{name}: the image data is truncated or corrupt ({exc})") from exc


def load_array(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB ``(h, w, 3)`` or grayscale ``(h, w)`` uint8 array brought to ``size`` the
    way ``load_image`` brings a decoded image there."""
    array = np.asarray(pixels)
    if (
        array.dtype != np.uint8
        or array.ndim not in (2, 3)
        or array.ndim == 3
        and array.shape[2] != 3
    ):
        raise InvalidImage(
            f"an array image must be uint8 (height, width, 3) RGB or (height, width) grayscale; "
            f"got {array.dtype} {array.shape}"
        )
    height, width = size
    return _resized(_to_rgb(Image.fromarray(array)), width, height)


def _resized(image: Image.Image, width: int, height: int) -> np.ndarray:
    if image.size != (width, height):
        # reducing_gap: an integer box reduction first, then bilinear; for big
        # downscales several times faster and indistinguishable from the full filter.
        image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)
    return np.asarray(image, dtype=np.uint8)


def _name(source: bytes | str | Path) -> str:
    return "uploaded image" if isinstance(source, bytes | bytearray) else str(source)


def _open(source: bytes | str | Path, max_pixels: int, name: str) -> Image.Image:
    if isinstance(source, bytes | bytearray):
        if not source:
            raise InvalidImage(f"{name}: the file is empty")
        fp: io.BytesIO | Path = io.BytesIO(source)
    else:
        fp = Path(source)
    try:
        image = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _pillow_refused(name, exc, max_pixels) from exc
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise InvalidImage(f"{name}: cannot read the file ({exc.strerror})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(
            f"{name}: not an image in a format Pillow can read "
            "(JPEG, PNG, GIF, WebP, BMP, TIFF ...)"
        ) from exc
    pixels = image.width * image.height
    if pixels > max_pixels:
        image.close()
        raise _too_large(name, f"{image.width}x{image.height} is {pixels:,} pixels", max_pixels)
    if pixels == 0:
        image.close()
        raise InvalidImage(f"{name}: the image has no pixels")
    return image


def _too_large(name: str, size: str, max_pixels: int) -> ImageTooLarge:
    return ImageTooLarge(f"{name}: {size}, over the limit of {max_pixels:,} pixels")


# Pillow's DecompressionBombError (and Warning): "Image size (P pixels) exceeds limit of L ..."
_PILLOW_BOMB = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+)")


def _pillow_refused(name: str, exc: Exception, max_pixels: int) -> ImageTooLarge:
    """Pillow's refusal in ktl's words. Pillow names its process-wide limit (twice
    ``PIL.Image.MAX_IMAGE_PIXELS`` for the error), not the ``max_pixels`` asked for."""
    found = _PILLOW_BOMB.search(str(exc))
    if found is None:
        return ImageTooLarge(f"{name}: {exc}")
    pixels, pillow = int(found[1]), int(found[2])
    if pixels > max_pixels:
        return _too_large(name, f"{pixels:,} pixels", max_pixels)
    return ImageTooLarge(
        f"{name}: {pixels:,} pixels, over Pillow's process-wide limit of {pillow:,} pixels "
        "(PIL.Image.MAX_IMAGE_PIXELS)"
    )


def _draft(image: Image.Image, width: int, height: int) -> None:
    """Let JPEG decode at 1/2, 1/4 or 1/8 scale when the target is that small."""
    if image.format != "JPEG":
        return
    orientation = image.getexif().get(0x0112, 1)
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: the target is transposed
        width, height = height, width
    image.draft(image.mode if image.mode == "CMYK" else "RGB", (width, height))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode.startswith("I") or image.mode == "F":
        image = _wide_to_l(image)
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _wide_to_l(image: Image.Image) -> Image.Image:
    """16- and 32-bit grayscale to 8 bits by scaling, not by clipping at 255."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.size and values.max() <= 1.0 else 255.0
    else:
        top = 65535.0
    scaled = np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled)  # 2-D uint8 is mode L
