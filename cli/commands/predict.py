"""``ktl predict``: classify local images with a published model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import EXIT_USAGE, add_json, add_model, add_store, load_model, print_json
from models.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "predict",
        help="classify local images with a published model",
        description="Classify images with a published model (same preprocessing and "
        "response as the HTTP service).",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    add_model(parser)
    parser.add_argument("--top-k", type=int, default=5, help="labels to show per image (default 5)")
    add_store(parser)
    add_json(parser, "print the HTTP native predict body")
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from models.predictions import predict_response
    from models.preprocessing import ImageError, load_image

    if args.top_k < 1:
        raise ConfigError("--top-k must be at least 1")
    bundle = load_model(args)
    pixels, names, failed = [], [], 0
    for image in args.images:
        try:
            pixels.append(load_image(Path(image), bundle.image_size))
            names.append(Path(image).name)
        except (ImageError, OSError) as exc:
            failed += 1
            print(f"ktl: skipped {image}: {exc}", file=sys.stderr)
    rows = (
        bundle.classifier.predict(np.stack(pixels)) if pixels else np.zeros((0, len(bundle.labels)))
    )
    response = predict_response(bundle, rows, names, args.top_k)
    if args.json:
        print_json(response.model_dump(mode="json"))
    else:
        for prediction in response.predictions:
            top = ", ".join(f"{t.label} {t.probability:.3f}" for t in prediction.top)
            print(f"{prediction.filename}: {top}")
    if failed:
        print(f"ktl: {failed} of {len(args.images)} files could not be classified", file=sys.stderr)
        return EXIT_USAGE
    return 0
