"""The built-in demo dataset: coloured circles, squares and triangles of varied
size, position, rotation, background and noise, so the class is the shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")


def _colour(rng: np.random.Generator, away_from: tuple[int, ...] | None = None) -> tuple[int, ...]:
    while True:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if (
            away_from is None
            or sum(abs(a - b) for a, b in zip(colour, away_from, strict=True)) > 200
        ):
            return colour


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One ``size`` x ``size`` RGB image of ``shape`` on a noisy background."""
    background = _colour(rng)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.18, 0.38) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    paint(draw, shape, (cx, cy, radius), _colour(rng, away_from=background), rng)
    return _noisy(image, rng)


def paint(
    draw: ImageDraw.ImageDraw,
    shape: str,
    where: tuple[float, float, float],
    fill: tuple[int, ...],
    rng: np.random.Generator,
) -> None:
    """``shape`` centred at ``where`` = (x, y, radius), turned at random."""
    cx, cy, radius = where
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    else:
        corners = 4 if shape == "square" else 3
        angle = rng.uniform(0, 2 * np.pi)
        points = [
            (
                cx + radius * np.cos(angle + 2 * np.pi * k / corners),
                cy + radius * np.sin(angle + 2 * np.pi * k / corners),
            )
            for k in range(corners)
        ]
        draw.polygon(points, fill=fill)


def _noisy(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    size = image.size[0]
    pixels = np.asarray(image, np.int16) + rng.normal(0, 12, (size, size, 3)).astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_shapes_dataset(
    root: str | Path, per_class: int = 200, size: int = 64, seed: int = 0
) -> Path:
    """Write ``per_class`` PNGs per shape into ``root/<shape>/``; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_shape(shape, size, rng).save(folder / f"{shape}_{i:04d}.png")
    return root


def draw_shapes(shapes: list[str], size: int, rng: np.random.Generator) -> Image.Image:
    """One image with each of ``shapes`` (possibly none) in its own quarter."""
    background = _colour(rng)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    half = size / 2
    for shape, cell in zip(shapes, rng.permutation(4), strict=False):
        radius = rng.uniform(0.3, 0.45) * half
        x0, y0 = (cell % 2) * half, (cell // 2) * half
        cx, cy = rng.uniform(radius, half - radius, 2) + (x0, y0)
        paint(draw, shape, (cx, cy, radius), _colour(rng, away_from=background), rng)
    return _noisy(image, rng)


def make_multilabel_dataset(
    root: str | Path, images: int = 600, size: int = 64, seed: int = 0, share: float = 0.45
) -> Path:
    """Write ``images`` PNGs into ``root/images/``, each holding every shape with
    probability ``share`` (so some hold none), and ``root/labels.csv`` (path,labels,
    ``;`` between labels); returns the CSV's path."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["path,labels"]
    for i in range(images):
        shapes = [shape for shape in SHAPES if rng.random() < share]
        draw_shapes(shapes, size, rng).save(root / "images" / f"{i:05d}.png")
        rows.append(f"images/{i:05d}.png,{';'.join(shapes)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"
