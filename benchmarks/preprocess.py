"""Image preprocessing: ktl's load_image against a plain Pillow open-convert-resize,
side by side in one run on the same files.

    .venv/bin/python benchmarks/preprocess.py [--repeat 20] [--size 224]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.preprocessing import load_image  # noqa: E402


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise: compresses like a photograph, not like a flat fill."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [127 + 100 * np.sin(x / (37 + 11 * c) + y / (53 + 7 * c) + c) for c in range(3)]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def plain_pillow(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """The common tutorial path: full decode, convert, resize."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def timed(function, data: bytes, size: tuple[int, int], repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls (after one warm-up)."""
    function(data, size)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(data, size)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--size", type=int, default=224, help="target size in pixels")
    args = parser.parse_args()
    size = (args.size, args.size)
    cases = [
        ("JPEG 12 MP (4000x3000)", encoded(photo_like(4000, 3000), "JPEG")),
        ("JPEG 3 MP (2000x1500)", encoded(photo_like(2000, 1500), "JPEG")),
        ("JPEG 0.3 MP (640x480)", encoded(photo_like(640, 480), "JPEG")),
        ("PNG 3 MP (2000x1500)", encoded(photo_like(2000, 1500), "PNG")),
    ]
    print(f"target {args.size}x{args.size}, median of {args.repeat} runs each")
    print(f"{'image':<24}{'plain Pillow ms':>16}{'ktl ms':>10}{'ktl / plain':>13}")
    for name, data in cases:
        plain = timed(plain_pillow, data, size, args.repeat)
        ours = timed(load_image, data, size, args.repeat)
        print(f"{name:<24}{plain:>16.1f}{ours:>10.1f}{ours / plain:>13.2f}")


if __name__ == "__main__":
    main()
