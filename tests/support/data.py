"""Generated datasets: never files from outside the repository."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 210)}


def colour_image(colour: tuple[int, int, int], size: int, rng: np.random.Generator) -> Image.Image:
    """A noisy image dominated by ``colour``: learnable in a few epochs."""
    base = np.array(colour, np.float32) + rng.normal(0, 25, (size, size, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def make_colour_dataset(root: Path, per_class: int = 12, size: int = 24, seed: int = 0) -> Path:
    """``root/<colour>/<n>.png`` for red, green and blue."""
    rng = np.random.default_rng(seed)
    for label, colour in COLOURS.items():
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour_image(colour, size, rng).save(folder / f"{label}_{i:03d}.png")
    return root


def encode_image(
    fmt: str = "PNG", size: tuple[int, int] = (40, 30), mode: str = "RGB", seed: int = 0
) -> bytes:
    """A noisy image of ``size`` (width, height) in ``fmt``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()
