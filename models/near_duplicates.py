"""Near-duplicates: the same picture after resizing, re-encoding, a small crop or a
colour shift, found by a perceptual hash and a colour signature, grouped by
union-find.

Each picture gets (``look_at``):

- a **DCT perceptual hash** (pHash, as ``imagehash.phash`` computes it): the
  luminance at 32x32, its 2-D DCT, the 8x8 lowest frequencies, one bit each for
  "above their median": 64 bits that resizing, JPEG and small crops barely move;
- a **colour signature**: the mean RGB of a 4x4 grid. The hash sees luminance
  only, so two drawings of one layout in other colours hash alike; the signature
  tells a colour *shift* (brightness, saturation, a few tens of levels) from a
  recolouring.

Two pictures are near-copies when their hashes differ in at most
``MAX_HAMMING`` bits *and* their signatures by at most ``MAX_COLOUR`` levels
(mean absolute difference, 0-255). Measured on generated pictures (tests and
docs/doctor.md): resized to 50-90 % at most 6 bits, JPEG quality 60 at most 12,
3 % cropped off each edge 95 % within 10 bits; 500 distinct cluttered scenes
(124,750 pairs) come no closer than 13 bits with matching colours at 160 px, 24
at 96 px (the size the tests draw, for speed). A picture
without structure (a nearly uniform one) has a hash of noise and is only grouped
with exact copies of itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.preprocessing import SkippedImage, decode_each, load_image

HASH_SIDE, HASH_BLOCK = 32, 8  # luminance at 32x32 -> the 8x8 lowest DCT frequencies
HASH_BITS = HASH_BLOCK * HASH_BLOCK
MAX_HAMMING = 12  # of 64 bits
MAX_COLOUR = 24.0  # mean absolute difference of the 4x4 mean RGB grid, in levels of 255
MIN_CONTRAST = 3.0  # luminance std (0-255) below which a picture has no structure to hash
_GRID = 4
_ROWS = 1024  # pairs are compared a block of rows at a time: memory stays n * _ROWS


@dataclass(frozen=True)
class Look:
    """What one reading of an image file tells: its size and appearance."""

    width: int  # upright, as a person sees it
    height: int
    bits: np.ndarray  # (64,) bool, the perceptual hash
    colour: np.ndarray  # (48,) float32, mean RGB of a 4x4 grid
    contrast: float  # luminance std at 32x32: the structure the hash sees
    spread: float  # the largest std of R, G and B at 32x32: any structure at all
    colourfulness: float  # mean |R-G| + |G-B| at 32x32: about 0 for a grayscale picture
    background: float = 0.0  # share of the 32x32 pixels within 12 of the median colour

    @property
    def hash_hex(self) -> str:
        return f"{int(''.join('1' if b else '0' for b in self.bits), 2):016x}"


def _dct_matrix(n: int) -> np.ndarray:
    k, x = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.cos(np.pi * (2 * x + 1) * k / (2 * n))


_DCT = _dct_matrix(HASH_SIDE)


def look_at_pixels(pixels: np.ndarray, width: int, height: int) -> Look:
    """The look of an RGB uint8 picture at ``HASH_SIDE`` x ``HASH_SIDE``."""
    rgb = pixels.astype(np.float64)
    luminance = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R 601-2, Pillow's "L"
    block = (_DCT @ luminance @ _DCT.T)[:HASH_BLOCK, :HASH_BLOCK].ravel()
    side = HASH_SIDE // _GRID
    grid = rgb.reshape(_GRID, side, _GRID, side, 3).mean(axis=(1, 3))
    spread = np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
    return Look(
        width=width,
        height=height,
        bits=block > np.median(block),
        colour=grid.ravel().astype(np.float32),
        contrast=float(luminance.std()),
        spread=float(rgb.reshape(-1, 3).std(axis=0).max()),
        colourfulness=float(spread.mean()),
        background=float(
            (np.abs(rgb - np.median(rgb.reshape(-1, 3), axis=0)).max(-1) <= 12).mean()
        ),
    )


def look_at(path: str | Path) -> Look:
    """Read one file: ``ImageError`` (or ``OSError``) when it cannot be decoded."""
    with Image.open(path) as image:  # the header only: the size before any resizing
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF: turned by 90 degrees
            width, height = height, width
    pixels = load_image(path, (HASH_SIDE, HASH_SIDE))  # the decoding training does
    return look_at_pixels(pixels, width, height)


def look_at_files(paths: Sequence[str | Path]) -> tuple[list[Look | None], dict[int, str]]:
    """``look_at`` every file, in parallel: the looks (None for a file that cannot be
    decoded) and, by index, why those could not."""

    looks: list[Look | None] = [None] * len(paths)
    errors: dict[int, str] = {}

    def skip(image: SkippedImage) -> None:
        errors[image.position] = image.reason

    threads = max(1, os.cpu_count() or 1)
    unreadable = (OSError, SyntaxError, ValueError)  # ImageError is a ValueError
    for position, _, look in decode_each(paths, look_at, skip, threads=threads, errors=unreadable):
        looks[position] = look
    return looks, errors


class _Groups:
    """Union-find over indices, with path halving."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)

    def members(self) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            groups.setdefault(self.find(i), []).append(i)
        return [sorted(g) for g in groups.values() if len(g) > 1]


def close_pairs(
    looks: Sequence[Look | None],
    *,
    max_hamming: int = MAX_HAMMING,
    max_colour: float = MAX_COLOUR,
    exact: Sequence[str | None] | None = None,
) -> list[tuple[int, int, int]]:
    """``(i, j, bits apart)`` for every pair of near-copies, i < j. ``exact`` (a
    content hash per picture) also pairs identical files, structure or not."""
    usable = [
        i for i, look in enumerate(looks) if look is not None and look.contrast >= MIN_CONTRAST
    ]
    pairs: list[tuple[int, int, int]] = []
    if usable:
        signs = np.stack([looks[i].bits for i in usable]).astype(np.float32) * 2 - 1  # type: ignore[union-attr]
        colours = np.stack([looks[i].colour for i in usable])  # type: ignore[union-attr]
        for start in range(0, len(usable), _ROWS):
            # +-1 codes: their dot product is 64 - 2 * (bits apart)
            apart = (HASH_BITS - signs[start : start + _ROWS] @ signs.T) / 2
            rows, cols = np.nonzero(apart <= max_hamming + 0.5)
            for r, c in zip(rows + start, cols, strict=True):
                if r < c and np.abs(colours[r] - colours[c]).mean() <= max_colour:
                    pairs.append((usable[r], usable[c], int(round(apart[r - start, c]))))
    if exact is not None:
        first: dict[str, int] = {}
        seen = {(i, j) for i, j, _ in pairs}
        for i, digest in enumerate(exact):
            if digest is None:
                continue
            j = first.setdefault(digest, i)
            if j != i and (j, i) not in seen:
                pairs.append((j, i, 0))
    return pairs


def group_pairs(n: int, pairs: Sequence[tuple[int, int, int]]) -> list[list[int]]:
    """Groups of indices joined by ``pairs`` (transitively), each sorted, largest first."""
    groups = _Groups(n)
    for i, j, _ in pairs:
        groups.union(i, j)
    return sorted(groups.members(), key=lambda g: (-len(g), g[0]))


def copies_across(groups: Sequence[Sequence[int]], splits: Sequence[str | None]) -> list[int]:
    """The validation and test members of groups that hold a training picture:
    near-copies that would let a model be scored on what it trained on."""
    leaked = []
    for group in groups:
        if any(splits[i] == "train" for i in group):
            leaked += [i for i in group if splits[i] in ("val", "test")]
    return sorted(leaked)
