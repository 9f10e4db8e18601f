"""The recipe for few images, measured on a generated transfer task in one run.

A smallcnn is pretrained (from random weights, with ``ktl train``) on a source
task of 10 generated shape classes; its backbone's weights go into a file that
``--weights`` takes. Then ``ktl train`` fine-tunes it on a target task of 4 other
shape classes with 10 and 20 training images per class (validation: 10 per
class; test: 40 per class, the figure shown), over several seeds, for:

- ``as of start``: the recipe as it stood when issue 16 began: constant rates,
  no regularisation, the head's epochs fixed (``--min-steps 0``);
- ``defaults``: ``ktl train``'s defaults now (the head runs at least 150 steps);
- ``+cosine+ls``: the defaults with ``--schedule cosine --label-smoothing 0.1``;
- ``scratch``: no transfer (``--weights none``).

And ``--lr auto`` against a grid of fixed head rates (head phase alone, no
augmentation), at 10 images per class.

    nice -n 10 .venv/bin/python benchmarks/recipe.py [--seeds 3] [--per-class 10,20]
        [--grid-seeds 2] [--source-images 60] [--source-epochs 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from models.bundle import load_bundle  # noqa: E402
from training.config import build_config  # noqa: E402
from training.job import run_job  # noqa: E402

SOURCE = ("triangle", "square", "pentagon", "hexagon", "circle", "ellipse", "star", "plus",
          "ring", "bar")  # fmt: skip
TARGET = ("two_dots", "cross", "ell", "half_disc")
SIZE = 20  # small enough for a busy 2-core machine; the shapes still tell apart
RECIPES = {
    "as of start": {"min_steps": 0},
    "defaults": {},
    "+cosine+ls": {"schedule": "cosine", "label_smoothing": 0.1},
}
GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def _polygon(cx: float, cy: float, radius: float, corners: int, angle: float, ratio: float = 1):
    """A regular polygon, squashed by ``ratio`` across, then turned by ``angle``."""
    points = []
    for k in range(corners):
        x, y = (
            radius * np.cos(2 * np.pi * k / corners),
            ratio * radius * np.sin(2 * np.pi * k / corners),
        )
        points.append((cx + x * np.cos(angle) - y * np.sin(angle),
                       cy + x * np.sin(angle) + y * np.cos(angle)))  # fmt: skip
    return points


def _bar(cx: float, cy: float, length: float, width: float, angle: float):
    """A rectangle centred on ``(cx, cy)``, turned by ``angle``."""
    corners = [(length, width), (-length, width), (-length, -width), (length, -width)]
    return [(cx + x * np.cos(angle) - y * np.sin(angle), cy + x * np.sin(angle) + y * np.cos(angle))
            for x, y in corners]  # fmt: skip


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
          angle: float, fill: tuple, back: tuple) -> None:  # fmt: skip
    corners = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}
    if shape in corners:
        draw.polygon(_polygon(cx, cy, r, corners[shape], angle), fill=fill)
    elif shape in ("circle", "ring"):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        if shape == "ring":
            draw.ellipse((cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2), fill=back)
    elif shape == "ellipse":
        draw.polygon(_polygon(cx, cy, r, 24, angle, ratio=0.45), fill=fill)
    elif shape == "star":
        outer, inner = _polygon(cx, cy, r, 5, angle), _polygon(cx, cy, r * 0.4, 5, angle + 0.63)
        draw.polygon([p for pair in zip(outer, inner, strict=True) for p in pair], fill=fill)
    else:
        _draw_more(draw, shape, cx, cy, r, angle, fill)


def _draw_more(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
               angle: float, fill: tuple) -> None:  # fmt: skip
    if shape in ("plus", "cross", "bar"):
        turn = angle if shape != "cross" else np.pi / 4 + angle * 0.1
        arms = (0,) if shape == "bar" else (0, np.pi / 2)
        for arm in arms:
            draw.polygon(_bar(cx, cy, r, r * 0.22, turn + arm), fill=fill)
    elif shape == "two_dots":
        d = r * 0.55
        for sx in (-1, 1):
            x, y = cx + sx * d * np.cos(angle), cy + sx * d * np.sin(angle)
            draw.ellipse((x - r * 0.35, y - r * 0.35, x + r * 0.35, y + r * 0.35), fill=fill)
    elif shape == "ell":
        w = r * 0.35
        draw.rectangle((cx - r, cy - r, cx - r + w, cy + r), fill=fill)
        draw.rectangle((cx - r, cy + r - w, cx + r, cy + r), fill=fill)
    elif shape == "half_disc":
        start = float(np.degrees(angle))
        draw.pieslice((cx - r, cy - r, cx + r, cy + r), start, start + 180, fill=fill)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(c) for c in rng.integers(0, 256, 3))
    return r, g, b


def shape_image(shape: str, rng: np.random.Generator) -> Image.Image:
    back = _colour(rng)
    fill = _colour(rng)
    while sum(abs(a - b) for a, b in zip(fill, back, strict=True)) < 200:
        fill = _colour(rng)
    image = Image.new("RGB", (SIZE, SIZE), back)
    r = rng.uniform(0.22, 0.4) * SIZE
    cx, cy = rng.uniform(r, SIZE - r, 2)
    _draw(ImageDraw.Draw(image), shape, cx, cy, r, rng.uniform(0, 2 * np.pi), fill, back)
    noisy = np.asarray(image, np.int16) + rng.normal(0, 20, (SIZE, SIZE, 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_task(root: Path, classes: tuple[str, ...], counts: dict[str, int], seed: int) -> Path:
    """``root/<split>/<class>/<n>.png`` with ``counts[split]`` images per class."""
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        for shape in classes:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape_image(shape, rng).save(folder / f"{i:03d}.png")
    return root


def train(data: Path, store: Path, name: str, **settings) -> tuple[dict, float]:
    flags = {"data": str(data), "name": name, "store": str(store), "backbone": "smallcnn",
             "image_size": SIZE, **settings}  # fmt: skip
    started = time.monotonic()
    with contextlib.redirect_stdout(sys.stderr):  # Keras' progress: stdout is for the table
        result = run_job(build_config({}, flags), log=lambda message: None)
    return result, time.monotonic() - started


def pretrain(work: Path, images: int, epochs: int) -> Path:
    data = write_task(work / "source", SOURCE, {"train": images, "val": 10}, seed=1000)
    result, seconds = train(data, work / "store", "source", weights="none", epochs=epochs,
                            patience=4, test_split=0)  # fmt: skip
    weights = work / "smallcnn_source.weights.h5"
    load_bundle(result.path).model.get_layer("smallcnn").save_weights(weights)
    print(f"pretrained smallcnn on {len(SOURCE)} source classes: validation accuracy "
          f"{result.metrics.accuracy:.3f} in {seconds:.0f} s", flush=True)  # fmt: skip
    return weights


def target(work: Path, per_class: int, seed: int) -> Path:
    root = work / f"target_{per_class}_{seed}"
    if not root.exists():
        write_task(root, TARGET, {"train": per_class, "val": 10, "test": 40}, seed=seed)
    return root


def _row(name: str, figures: list[float], seconds: list[float]) -> str:
    return (f"| {name} | {np.mean(figures):.3f} ± {np.std(figures):.3f} | "
            f"{np.mean(seconds):.1f} s |")  # fmt: skip


def compare_recipes(work: Path, weights: Path, sizes: list[int], seeds: int) -> dict:
    runs: dict = {}
    transfer = {"weights": str(weights), "unfreeze_from": "block3_conv1"}
    recipes = {**{k: {**transfer, **v} for k, v in RECIPES.items()}, "scratch": {"weights": "none"}}
    for per_class in sizes:
        for name, settings in recipes.items():
            for seed in range(seeds):
                data = target(work, per_class, seed)
                result, seconds = train(data, work / "store", "t", seed=seed, **settings)
                runs.setdefault(f"{per_class}|{name}", []).append(
                    (result.metrics.accuracy, seconds)
                )
            accs, secs = zip(*runs[f"{per_class}|{name}"], strict=True)
            print(f"{per_class:3d}/class {_row(name, list(accs), list(secs))}", flush=True)
    return runs


def compare_rates(work: Path, weights: Path, per_class: int, seeds: int, grid_seeds: int) -> dict:
    runs: dict = {}
    head = {"weights": str(weights), "fine_tune_epochs": 0, "augment": False}
    for rate in (*GRID, "auto"):
        for seed in range(seeds if rate == "auto" else grid_seeds):
            result, seconds = train(target(work, per_class, seed), work / "store", "lr",
                                    seed=seed, lr=rate, **head)  # fmt: skip
            found = result.training.get("lr_find", {}).get("head", {}).get("suggestion")
            runs.setdefault(str(rate), []).append((result.metrics.accuracy, seconds, found))
        accs, secs, _ = zip(*runs[str(rate)], strict=True)
        print(f"lr {rate!s:>6} {_row(str(rate), list(accs), list(secs))}", flush=True)
    return runs


def report(runs: dict, rates: dict, sizes: list[int]) -> None:
    print("\n| images per class | recipe | test accuracy (mean ± sd) | seconds per run |")
    print("|---|---|---|---|")
    for key, values in runs.items():
        per_class, name = key.split("|")
        accs, secs = zip(*values, strict=True)
        print(f"| {per_class} {_row(name, list(accs), list(secs))}")
    mean = {key: float(np.mean([a for a, _ in values])) for key, values in runs.items()}
    for per_class in sizes:
        start, new = mean[f"{per_class}|as of start"], mean[f"{per_class}|defaults"]
        cosine, scratch = mean[f"{per_class}|+cosine+ls"], mean[f"{per_class}|scratch"]
        print(f"{per_class}/class: defaults - as of start {100 * (new - start):+.1f} points, "
              f"+cosine+ls - defaults {100 * (cosine - new):+.1f}, transfer (defaults) - "
              f"scratch {100 * (new - scratch):+.1f}")  # fmt: skip
    fixed = {float(rate): float(np.mean([a for a, *_ in values]))
             for rate, values in rates.items() if rate != "auto"}  # fmt: skip
    best = max(fixed, key=lambda rate: fixed[rate])
    chosen = [found for *_, found in rates["auto"]]
    auto_accuracy = float(np.mean([a for a, *_ in rates["auto"]]))
    auto_seconds = float(np.mean([s for _, s, _ in rates["auto"]]))
    fixed_seconds = float(np.mean([s for _, s, _ in rates[str(best)]]))
    print(f"\nbest fixed head rate {best:g} ({fixed[best]:.3f}); --lr auto chose "
          f"{', '.join(f'{c:.2g}' for c in chosen)} ({auto_accuracy:.3f}): ratio to the best "
          f"{', '.join(f'{c / best:.2f}' for c in chosen)}; a run with the range test took "
          f"{auto_seconds:.1f} s against {fixed_seconds:.1f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-class", default="10,20")
    parser.add_argument("--grid-seeds", type=int, default=2, help="seeds of each rate")
    parser.add_argument("--source-images", type=int, default=60, help="per source class")
    parser.add_argument("--source-epochs", type=int, default=10)
    parser.add_argument("--json", metavar="FILE", help="also write every run's figures here")
    args = parser.parse_args()
    sizes = [int(n) for n in args.per_class.split(",")]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ktl-recipe-") as folder:
        work = Path(folder)
        weights = pretrain(work, args.source_images, args.source_epochs)
        runs = compare_recipes(work, weights, sizes, args.seeds)
        rates = compare_rates(work, weights, sizes[0], args.seeds, args.grid_seeds)
    report(runs, rates, sizes)
    print(f"\ntook {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"recipes": runs, "rates": rates}, indent=2))


if __name__ == "__main__":
    main()
