"""``ktl demo``: a built-in dataset of shapes, trained and published as ``demo``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from cli.common import add_json, add_store, note, print_json
from cli.train_summary import print_summary

# With ImageNet weights, which ship with ktl for EfficientNet-Lite0 (no download): real
# transfer learning, a head on ImageNet features and then the top blocks fine-tuned.
DEMO_PRETRAINED: dict[str, Any] = {
    "backbone": "efficientnet_lite0",
    "weights": "imagenet",
    "image_size": 64,
    "epochs": 5,
    "fine_tune_epochs": 2,
}
# Without them (the weights package is not installed): smallcnn learns the shapes from
# scratch (2 to 10 minutes on 2 cores).
DEMO_SCRATCH: dict[str, Any] = {
    "backbone": "smallcnn",
    "weights": "none",
    "image_size": 32,
    "epochs": 30,
    "patience": 8,
    "augment": False,
}
DEMO_IMAGES_PER_CLASS = 400


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "demo",
        help="make a built-in dataset, train on it and publish `demo`",
        description="Generate a small synthetic dataset (circles, squares, triangles), "
        "train on it and publish it as `demo`.",
    )
    parser.add_argument(
        "--data-dir", default="demo_data", help="where to write the images (default ./demo_data)"
    )
    parser.add_argument("--name", default="demo", help="model name (default demo)")
    add_store(parser)
    add_json(parser, "print the training summary as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.backbones import get_backbone
    from models.classifier import WeightsUnavailable, build_backbone
    from training.config import build_config
    from training.demo import make_shapes_dataset
    from training.job import run_job

    note(f"Writing the demo dataset (circles, squares, triangles) to {args.data_dir}")
    make_shapes_dataset(args.data_dir, per_class=DEMO_IMAGES_PER_CLASS)
    pretrained = get_backbone(DEMO_PRETRAINED["backbone"])
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras reports downloads on stdout
            build_backbone(pretrained, (DEMO_PRETRAINED["image_size"],) * 2, "imagenet")
        settings = DEMO_PRETRAINED
        note(f"Fine-tuning {pretrained.name} with ImageNet weights")
    except WeightsUnavailable as exc:
        settings = DEMO_SCRATCH
        reason = str(exc).splitlines()[0]
        note(
            f"{reason}\nSo the demo trains {settings['backbone']} from scratch instead "
            "(no transfer learning; fine on this simple dataset)."
        )
    config = build_config(
        {}, {"data": args.data_dir, "name": args.name, "store": args.store, **settings}
    )
    result = run_job(config)
    print_json(result) if args.json else print_summary(result)
    return 0
