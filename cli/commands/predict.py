"""``ktl predict``: classify local images (files or whole folders) with a published
model, as the HTTP service would."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import EXIT_USAGE, add_json, add_model, add_store, load_model, print_json
from models.choices import ENGINES
from models.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

CHUNK = 64  # images decoded and classified at a time, so a big folder fits in memory


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "predict",
        help="classify local images with a published model",
        description="Classify image files, or every image under a folder (recursively), "
        "with a published model: the same preprocessing and answer as the HTTP service.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    add_model(parser)
    parser.add_argument("--top-k", type=int, default=5, help="labels to show per image (default 5)")
    parser.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="answer 'not sure' below this top probability (default: the version's own "
        "threshold; 0 always answers)",
    )
    parser.add_argument(
        "--csv",
        metavar="FILE",
        help="also write one row per image: path, version, label, probability, and every "
        "label's probability",
    )
    parser.add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="auto (default, as the service: the INT8 engine where the version has one "
        "whose agreement passed KTL_INT8_MIN_AGREEMENT), keras, or int8",
    )
    add_store(parser)
    add_json(parser, "print the HTTP native predict body")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.predictions import Prediction, PredictResponse, predict_response
    from models.preprocessing import image_files

    if args.top_k < 1:
        raise ConfigError("--top-k must be at least 1")
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise ConfigError("--min-confidence must be from 0 to 1")
    files = image_files([Path(image) for image in args.images])
    if not files:
        raise ConfigError(f"no images found in {', '.join(args.images)}")
    bundle = load_model(args)
    engine = bundle.engine(args.engine, args.settings.int8_min_agreement)
    predictions: list[Prediction] = []
    paths: list[Path] = []
    failed = 0
    for chunk_paths, pixels, skipped in _decoded(files, bundle.image_size):
        failed += skipped
        if chunk_paths:
            rows = engine.predict(pixels)
            names = [path.name for path in chunk_paths]
            predictions += predict_response(
                bundle, rows, names, args.top_k, args.min_confidence
            ).predictions
            paths += chunk_paths
    response = PredictResponse(model=bundle.name, version=bundle.version, predictions=predictions)
    if args.csv:
        _write_csv(Path(args.csv), bundle, paths, predictions)
    if args.json:
        print_json(response.model_dump(mode="json"))
    else:
        print(f"{bundle.name} version {bundle.version} ({engine.engine} engine):")
        for path, prediction in zip(paths, predictions, strict=True):
            top = ", ".join(f"{t.label} {t.probability:.3f}" for t in prediction.top)
            print(f"{path}: {_answer(prediction.decision)}  ({top})")
    if failed:
        print(f"ktl: {failed} of {len(files)} files could not be classified", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _decoded(
    files: list[Path], size: tuple[int, int]
) -> Iterator[tuple[list[Path], np.ndarray, int]]:
    """``(paths, pixels, skipped)`` per chunk of files; a file that is no image is
    named on stderr and skipped."""
    import numpy as np

    from models.preprocessing import SkippedImage, decode_images

    for start in range(0, len(files), CHUNK):
        skipped: list[SkippedImage] = []
        decoded = list(decode_images(files[start : start + CHUNK], size, skipped.append))
        for image in skipped:
            print(f"ktl: skipped {image.reason}", file=sys.stderr)
        pixels = [image.pixels for image in decoded]
        yield (
            [image.path for image in decoded],
            np.stack(pixels) if pixels else np.zeros((0, *size, 3), np.uint8),
            len(skipped),
        )


def _answer(decision) -> str:
    if hasattr(decision, "labels"):  # a multi-label version's set, maybe empty
        return ", ".join(decision.labels) or "none of these"
    if decision.label is not None:
        return decision.label
    return f"not sure (top probability {decision.confidence:.3f} < {decision.threshold:.3f})"


def _cell(decision) -> str:
    """The CSV's decision: the label, ``;`` between a multi-label set's, or empty."""
    if hasattr(decision, "labels"):
        from models.decision import SEPARATOR

        return SEPARATOR.join(decision.labels)
    return decision.label or ""


def _write_csv(target: Path, bundle, paths: list[Path], predictions: list) -> None:
    labels = bundle.labels
    with open(target, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        header = ["path", "model", "version", "decision", "label", "probability", *labels]
        writer.writerow(header)
        for path, prediction in zip(paths, predictions, strict=True):
            best = prediction.top[0]
            writer.writerow(
                [
                    path,
                    bundle.name,
                    bundle.version,
                    _cell(prediction.decision),
                    best.label,
                    f"{best.probability:.6f}",
                ]
                + [f"{prediction.probabilities[label]:.6f}" for label in labels]
            )
    print(f"Wrote {len(paths)} rows to {target}", file=sys.stderr)
