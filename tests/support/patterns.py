"""Generated pictures for the doctor's tests and its pretrained test backbone:
shapes and textures (classes to learn) and cluttered scenes (distinct pictures
for the near-duplicate tests). Never files from outside the repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.dataset.demo import SHAPES, draw_shape

TEXTURES = ("stripes", "checks", "dots")
EXTRA_SHAPES = ("star", "cross")
# What the committed test backbone (tests/fixtures/smallcnn_patterns.h5) learnt.
PRETRAINING_CLASSES = (*SHAPES, *EXTRA_SHAPES, *TEXTURES)


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A background and a foreground colour far enough apart to see the pattern."""
    while True:
        a, b = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2))
        if sum(abs(x - y) for x, y in zip(a, b, strict=True)) > 200:
            return a, b


def _noisy(image: Image.Image, rng: np.random.Generator, sigma: float = 12) -> Image.Image:
    pixels = np.asarray(image, np.float32) + rng.normal(0, sigma, (*image.size[::-1], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _star_or_cross(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    background, fill = _colours(rng)
    image = Image.new("RGB", (size, size), background)
    radius = rng.uniform(0.22, 0.4) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    angle = rng.uniform(0, 2 * np.pi)
    draw = ImageDraw.Draw(image)
    c, s = np.cos(angle), np.sin(angle)
    if kind == "star":  # five points, inner radius 40 %
        radii = [radius, 0.4 * radius] * 5
        draw.polygon(
            [
                (cx + r * np.cos(angle + np.pi * k / 5), cy + r * np.sin(angle + np.pi * k / 5))
                for k, r in enumerate(radii)
            ],
            fill=fill,
        )
    else:  # a plus sign: two bars a third of its width thick
        arm = radius / 3
        for w, h in ((radius, arm), (arm, radius)):
            corners = [(-w, -h), (w, -h), (w, h), (-w, h)]
            draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners], fill=fill)
    return _noisy(image, rng)


def _texture(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    background, fill = _colours(rng)
    period = rng.uniform(0.15, 0.3) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    phase = rng.uniform(0, period, 2)
    if kind == "stripes":
        mask = ((u + phase[0]) % period) < period / 2
    elif kind == "checks":
        mask = (((u + phase[0]) // (period / 2) + (v + phase[1]) // (period / 2)) % 2) == 0
    else:  # dots on a grid
        du = ((u + phase[0]) % period) - period / 2
        dv = ((v + phase[1]) % period) - period / 2
        mask = du**2 + dv**2 < (period / 3.2) ** 2
    pixels = np.where(mask[..., None], np.array(fill), np.array(background)).astype(np.uint8)
    return _noisy(Image.fromarray(pixels), rng)


def draw_pattern(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One picture of a shape (the demo's three, a star, a cross) or a texture."""
    if kind in SHAPES:
        return draw_shape(kind, size, rng)
    if kind in EXTRA_SHAPES:
        return _star_or_cross(kind, size, rng)
    if kind in TEXTURES:
        return _texture(kind, size, rng)
    raise ValueError(f"unknown pattern {kind!r}")


def make_pattern_dataset(
    root: Path, kinds: tuple[str, ...], per_class: int, size: int, seed: int
) -> Path:
    """``root/<kind>/<kind>_NNNN.png``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for kind in kinds:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_pattern(kind, size, rng).save(folder / f"{kind}_{i:04d}.png")
    return root


def scene(size: int, rng: np.random.Generator) -> Image.Image:
    """A cluttered picture: soft colour blobs, one to three flat shapes, noise. Two
    scenes drawn apart are distinct pictures (the near-duplicate tests' negatives)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    pixels = np.zeros((size, size, 3))
    for _ in range(6):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.4)
        weight = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        pixels = pixels * (1 - weight) + rng.uniform(0, 255, 3) * weight
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(0.08, 0.25) * size
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        elif kind == 1:
            draw.rectangle((x - r, y - 0.6 * r, x + r, y + 0.6 * r), fill=colour)
        else:
            draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=colour)
    return _noisy(image, rng, sigma=6)


def flip_labels(root: Path, share: float, seed: int) -> set[str]:
    """Move ``share`` of the images of a class-folder dataset into another class's
    folder (a wrong label); returns their new paths, relative to ``root``."""
    rng = np.random.default_rng(seed)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = sorted(p for c in classes for p in (root / c).iterdir())
    flipped = set()
    for path in rng.choice(files, size=round(share * len(files)), replace=False):
        wrong = rng.choice([c for c in classes if c != path.parent.name])
        target = root / wrong / f"flipped_{path.name}"
        path.rename(target)
        flipped.add(str(target.relative_to(root)))
    return flipped
