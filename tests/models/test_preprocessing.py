"""load_image: every format and mode Pillow reads becomes the same RGB uint8 array."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageOps, JpegImagePlugin

from models.preprocessing import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    ImageTooLarge,
    InvalidImage,
    load_image,
)

WHITE = [255, 255, 255]


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def asymmetric(height: int, width: int) -> np.ndarray:
    """Every pixel different, so any flip or rotation shows."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([y * 20, x * 20, np.full_like(x, 100)], axis=-1).astype(np.uint8)


def smooth_picture(width: int, height: int) -> Image.Image:
    """Gradients and large shapes: what a photo looks like to a down-scaler."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [255 * x // width, 255 * y // height, 128 + 100 * np.sin(x / 97.0)], axis=-1
    ).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 5, height // 5, width // 2, height // 2), fill=(250, 20, 20))
    draw.rectangle((width * 3 // 5, height // 2, width * 9 // 10, height * 9 // 10), fill=(0, 0, 0))
    return image


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


# What a viewer shows for each EXIF orientation of the stored pixels S (EXIF 2.3, tag 274).
ORIENTED = {
    1: lambda s: s,
    2: lambda s: s[:, ::-1],
    3: lambda s: s[::-1, ::-1],
    4: lambda s: s[::-1, :],
    5: lambda s: s.transpose(1, 0, 2),
    6: lambda s: np.rot90(s, k=-1),
    7: lambda s: s[::-1, ::-1].transpose(1, 0, 2),
    8: lambda s: np.rot90(s, k=1),
}


# -- formats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("WEBP", {"lossless": True}),
    ],
)
def test_lossless_formats_keep_every_pixel(fmt, options):
    pixels = noise(20, 30)
    result = load_image(encode(Image.fromarray(pixels), fmt, **options), (20, 30))
    np.testing.assert_array_equal(result, pixels)


def test_jpeg_decodes_close_to_its_source():
    image = smooth_picture(160, 120)
    result = load_image(encode(image, "JPEG", quality=95), (120, 160))
    assert np.abs(result.astype(int) - np.asarray(image, dtype=int)).mean() < 3


def test_gif_keeps_its_palette_colours():
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:, 4:] = (0, 0, 255)
    pixels[:4, :4] = (255, 0, 0)
    result = load_image(encode(Image.fromarray(pixels), "GIF"), (8, 8))
    np.testing.assert_array_equal(result, pixels)


FRAMES = [(255, 0, 0), (0, 0, 255), (0, 255, 0)]


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("GIF", {}), ("TIFF", {}), ("WEBP", {"lossless": True}), ("PNG", {})],
    ids=["animated-gif", "multi-page-tiff", "animated-webp", "apng"],
)
def test_animated_and_multi_page_images_give_the_first_frame(fmt, options):
    frames = [Image.new("RGB", (8, 6), colour) for colour in FRAMES]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **options)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == len(FRAMES)
    result = load_image(data, (6, 8))
    assert (result == FRAMES[0]).all()


# -- modes --------------------------------------------------------------------------------


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (3, 1))
    image.putdata([(10, 20, 30, 0), (10, 20, 30, 255), (0, 0, 0, 128)])
    result = load_image(encode(image, "PNG"), (1, 3))
    assert result[0, 0].tolist() == WHITE
    assert result[0, 1].tolist() == [10, 20, 30]
    # Half-transparent black over white is mid grey, not black (alpha dropped) or white.
    np.testing.assert_allclose(result[0, 2], [127, 127, 127], atol=1)


def test_la_is_composited_on_white():
    image = Image.new("LA", (2, 1))
    image.putdata([(40, 0), (40, 255)])
    result = load_image(encode(image, "PNG"), (1, 2))
    assert result.tolist() == [[WHITE, [40, 40, 40]]]


def _palette_image() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    image.putdata([0, 1])
    return image


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_composited_on_white(fmt):
    result = load_image(encode(_palette_image(), fmt, transparency=0), (1, 2))
    assert result.tolist() == [[WHITE, [0, 255, 0]]]


def test_palette_without_transparency_uses_its_colours():
    result = load_image(encode(_palette_image(), "PNG"), (1, 2))
    assert result.tolist() == [[[255, 0, 0], [0, 255, 0]]]


def test_grayscale_repeats_the_level_in_every_channel():
    pixels = noise(5, 7, channels=1)
    result = load_image(encode(Image.fromarray(pixels), "PNG"), (5, 7))
    np.testing.assert_array_equal(result, np.repeat(pixels[..., None], 3, axis=-1))


def test_bilevel_is_black_and_white():
    image = Image.new("1", (2, 1))
    image.putdata([0, 1])
    result = load_image(encode(image, "PNG"), (1, 2))
    assert result.tolist() == [[[0, 0, 0], WHITE]]


def test_16_bit_png_is_scaled_not_clipped():
    levels = np.array([[0, 65535, 32768, 1000]], dtype=np.uint16)
    image = Image.fromarray(levels)
    data = encode(image, "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    result = load_image(data, (1, 4))
    assert result[..., 0].tolist() == [[0, 255, 128, 4]]
    assert (result == result[..., :1]).all()


def test_32_bit_integer_tiff_uses_the_16_bit_range():
    levels = np.array([[0, 65535, 32768, 70000, -5]], dtype=np.int32)
    data = encode(Image.fromarray(levels), "TIFF")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "I"
    result = load_image(data, (1, 5))
    assert result[..., 1].tolist() == [[0, 255, 128, 255, 0]]


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0.0, 0.5, 1.0, 0.25], [0, 128, 255, 64]), ([0.0, 100.0, 255.0, 300.0], [0, 100, 255, 255])],
    ids=["unit-range", "byte-range"],
)
def test_float_tiff(values, expected):
    data = encode(Image.fromarray(np.array([values], dtype=np.float32)), "TIFF")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "F"
    assert load_image(data, (1, 4))[..., 2].tolist() == [expected]


CMYK_COLOURS = {
    (0, 255, 255, 0): (255, 0, 0),
    (255, 0, 255, 0): (0, 255, 0),
    (255, 255, 0, 0): (0, 0, 255),
    (0, 0, 0, 0): (255, 255, 255),
    (0, 0, 0, 255): (0, 0, 0),
}


@pytest.mark.parametrize(("cmyk", "rgb"), list(CMYK_COLOURS.items()))
@pytest.mark.parametrize("side", [16, 640], ids=["full-decode", "draft"])
def test_cmyk_jpeg(cmyk, rgb, side):
    data = encode(Image.new("CMYK", (side, side), cmyk), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "CMYK"
    result = load_image(data, (16, 16)).astype(int)
    assert np.abs(result - rgb).max() <= 8


# -- EXIF orientation ---------------------------------------------------------------------


def _displayed_size(stored: np.ndarray, orientation: int) -> tuple[int, int]:
    return ORIENTED[orientation](stored).shape[:2]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_exif_orientation_lossless(orientation, fmt):
    stored = asymmetric(6, 10)
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(Image.fromarray(stored), fmt, exif=exif_with_orientation(orientation), **options)
    expected = ORIENTED[orientation](stored)
    result = load_image(data, _displayed_size(stored, orientation))
    np.testing.assert_array_equal(result, expected)


def _blocks(height: int, width: int, block: int) -> np.ndarray:
    """Flat colour blocks (JPEG-friendly), all different."""
    small = asymmetric(height // block, width // block)
    return np.repeat(np.repeat(small, block, axis=0), block, axis=1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg(orientation):
    stored = _blocks(32, 64, 16)
    data = encode(
        Image.fromarray(stored), "JPEG", quality=95, exif=exif_with_orientation(orientation)
    )
    expected = ORIENTED[orientation](stored).astype(int)
    result = load_image(data, _displayed_size(stored, orientation)).astype(int)
    assert np.abs(result - expected).mean() < 3


def _draft_scale_sizes(stored_size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The smallest JPEG DCT scale (1/8, 1/4, 1/2, 1) still at least ``target`` (w, h)."""
    for scale in (8, 4, 2, 1):
        size = tuple(-(-side // scale) for side in stored_size)
        if size[0] >= target[0] and size[1] >= target[1]:
            return size
    raise AssertionError("unreachable")


@pytest.fixture
def draft_sizes(monkeypatch) -> list[tuple[int, int]]:
    """Sizes at which JPEGs were set to decode, recorded by wrapping Pillow's draft()."""
    sizes: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, size):
        result = original(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    return sizes


def _full_decode(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """The slow reference: decode every pixel, then resize."""
    with Image.open(io.BytesIO(data)) as image:
        full = ImageOps.exif_transpose(image.convert("RGB"))
        height, width = size
        return np.asarray(full.resize((width, height), Image.Resampling.BILINEAR))


def test_jpeg_draft_decodes_a_big_photo_at_reduced_scale(draft_sizes):
    data = encode(smooth_picture(2000, 1500), "JPEG", quality=90)
    result = load_image(data, (64, 64))
    assert draft_sizes == [_draft_scale_sizes((2000, 1500), (64, 64))]
    assert draft_sizes[0][0] < 2000
    reference = _full_decode(data, (64, 64))
    assert np.abs(result.astype(int) - reference.astype(int)).mean() < 4


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_jpeg_draft_with_orientation(draft_sizes, orientation):
    stored = smooth_picture(800, 400)  # 800 wide, 400 high on disk
    data = encode(stored, "JPEG", quality=90, exif=exif_with_orientation(orientation))
    size = (80, 40) if orientation in (6, 8) else (40, 80)  # (height, width) as shown
    result = load_image(data, size)
    assert result.shape == (*size, 3)
    # The draft target is in stored orientation: (width, height) swapped when rotated.
    target_on_disk = (size[0], size[1]) if orientation in (6, 8) else (size[1], size[0])
    assert draft_sizes == [_draft_scale_sizes((800, 400), target_on_disk)]
    reference = _full_decode(data, size)
    assert np.abs(result.astype(int) - reference.astype(int)).mean() < 4


# -- shape and dtype ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 48), (48, 32), (1, 1), (300, 17), (224, 224)])
def test_output_is_uint8_rgb_of_the_requested_height_and_width(size):
    result = load_image(encode(smooth_picture(100, 60), "PNG"), size)
    assert result.dtype == np.uint8
    assert result.shape == (*size, 3)


def test_resize_is_bilinear_without_keeping_aspect_ratio():
    left_right = np.zeros((10, 40, 3), np.uint8)
    left_right[:, 20:] = 255
    result = load_image(encode(Image.fromarray(left_right), "PNG"), (20, 20))
    # Stretched, not cropped or padded: the left half stays black, the right half white.
    assert (result[:, :9] == 0).all()
    assert (result[:, 11:] == 255).all()


def test_path_and_bytes_give_the_same_array(tmp_path):
    for fmt, suffix in (("JPEG", ".jpg"), ("PNG", ".png")):
        data = encode(smooth_picture(120, 90), fmt)
        path = tmp_path / f"picture{suffix}"
        path.write_bytes(data)
        from_bytes = load_image(data, (30, 40))
        np.testing.assert_array_equal(load_image(path, (30, 40)), from_bytes)
        np.testing.assert_array_equal(load_image(str(path), (30, 40)), from_bytes)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_a_multi_frame_file_is_closed_after_loading(tmp_path, monkeypatch, fmt):
    frames = [Image.new("RGB", (8, 8), colour) for colour in FRAMES]
    path = tmp_path / f"frames.{fmt.lower()}"
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:])
    opened = []
    original_open = Image.open

    def recording_open(fp, *args, **kwargs):
        image = original_open(fp, *args, **kwargs)
        opened.append(image)
        return image

    monkeypatch.setattr(Image, "open", recording_open)
    load_image(path, (8, 8))
    assert len(opened) == 1
    assert opened[0].fp is None  # Pillow leaves multi-frame files open unless closed


# -- errors -------------------------------------------------------------------------------


def test_empty_bytes():
    with pytest.raises(InvalidImage, match="empty"):
        load_image(b"", (8, 8))


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        b"just some words, not a picture\n" * 10,
        b"<!DOCTYPE html><html><body><img src='cat.jpg'></body></html>",
        b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n",
    ],
    ids=["random", "text", "html", "pdf"],
)
def test_not_an_image(data):
    with pytest.raises(InvalidImage, match="not an image"):
        load_image(data, (8, 8))


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_text("this is not a photo")
    with pytest.raises(InvalidImage, match="holiday.jpg"):
        load_image(path, (8, 8))


def test_missing_file_says_so(tmp_path):
    with pytest.raises(InvalidImage, match="cannot read the file"):
        load_image(tmp_path / "gone.png", (8, 8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF"])
def test_truncated_image(fmt):
    data = encode(Image.fromarray(noise(64, 64)), fmt)
    with pytest.raises(InvalidImage, match="truncated"):
        load_image(data[: len(data) // 2], (8, 8))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims ``width`` x ``height`` (one row of pixel data follows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    row = zlib.compress(b"\x00" * (1 + (width + 7) // 8))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", row)
        + _png_chunk(b"IEND", b"")
    )


def test_over_the_default_pixel_limit():
    width, height = 10_000, DEFAULT_MAX_PIXELS // 10_000 + 1  # under Pillow's own limit
    with pytest.raises(ImageTooLarge, match=f"{width}x{height}"):
        load_image(_png_header_only(width, height), (8, 8))


def test_pillow_decompression_bomb_is_too_large():
    with pytest.raises(ImageTooLarge, match="over Pillow's process-wide limit"):
        load_image(_png_header_only(30_000, 30_000), (8, 8), max_pixels=10**10)


def test_an_image_pillow_refuses_itself_names_the_configured_limit_not_pillows():
    # Over twice Pillow's process-wide limit, Image.open refuses before ktl's own check.
    assert 30_000 * 30_000 > 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLarge) as caught:
        load_image(_png_header_only(30_000, 30_000), (8, 8), name="bomb.png")
    message = str(caught.value)
    assert message == "bomb.png: 900,000,000 pixels, over the limit of 64,000,000 pixels"


def test_over_a_configured_pixel_limit():
    data = encode(Image.fromarray(noise(100, 101)), "PNG")
    with pytest.raises(ImageTooLarge, match="10,100 pixels"):
        load_image(data, (8, 8), max_pixels=10_000)
    assert load_image(data, (8, 8), max_pixels=10_100).shape == (8, 8, 3)


def test_a_real_big_bilevel_png_is_too_large():
    data = encode(Image.new("1", (9_000, 8_000)), "PNG")
    with pytest.raises(ImageTooLarge):
        load_image(data, (8, 8))


# -- properties ---------------------------------------------------------------------------

MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "CMYK"]


def _random_image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "1":
        return Image.fromarray(noise(height, width, 1, seed)).convert("1")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2, "P": 1, "CMYK": 4}[mode]
    image = Image.frombytes(mode, (width, height), noise(height, width, channels, seed).tobytes())
    if mode == "P":
        image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
    return image


@settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(MODES),
    stored=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    target=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_valid_image_becomes_rgb_uint8_of_the_requested_size(mode, stored, target, seed):
    image = _random_image(mode, *stored, seed)
    assert image.mode == mode
    data = encode(image, "JPEG" if mode == "CMYK" else "PNG")
    result = load_image(data, target)
    assert result.dtype == np.uint8
    assert result.shape == (*target, 3)


_SOURCES = {
    "JPEG": encode(smooth_picture(24, 16), "JPEG", exif=exif_with_orientation(6)),
    "PNG": encode(Image.fromarray(noise(16, 24)), "PNG", exif=exif_with_orientation(6)),
    "GIF": encode(Image.fromarray(noise(16, 24)), "GIF"),
    "WEBP": encode(Image.fromarray(noise(16, 24)), "WEBP"),
    "BMP": encode(Image.fromarray(noise(16, 24)), "BMP"),
}


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.*")  # Pillow warns about bad EXIF
@settings(deadline=None, max_examples=150)
@given(
    fmt=st.sampled_from(sorted(_SOURCES)),
    edits=st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupt_headers_raise_only_image_errors(fmt, edits):
    data = bytearray(_SOURCES[fmt])
    for position, value in edits:
        data[position % len(data)] = value
    try:
        result = load_image(bytes(data), (8, 8))
    except ImageError:
        return
    assert result.shape == (8, 8, 3)
