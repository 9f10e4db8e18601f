"""``ktl demo``: a built-in dataset of shapes, trained and published as ``demo``; a
rerun reuses the published version unless told ``--retrain``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import add_json, add_store, check_port_free, note, print_json
from cli.train_summary import print_summary

if TYPE_CHECKING:
    from models.store import ModelStore

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
DEMO_MULTILABEL_IMAGES = 600  # --task multilabel: each shape on 45 % of them, none on 17 %
# --task multilabel's own defaults, so it neither reuses nor overwrites the classic demo
MULTILABEL_DEFAULTS = {"data_dir": "demo_multilabel", "name": "demo-multilabel"}


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "demo",
        help="make a built-in dataset, train on it and publish `demo`",
        description="Generate a small synthetic dataset (circles, squares, triangles), "
        "train on it and publish it as `demo`. When the store already holds a version of "
        "it, that one is reused and nothing is trained (--retrain trains a new version).",
    )
    parser.add_argument(
        "--data-dir",
        help="where to write the images (default ./demo_data; ./demo_multilabel with "
        "--task multilabel)",
    )
    parser.add_argument(
        "--name", help="model name (default demo; demo-multilabel with --task multilabel)"
    )
    parser.add_argument(
        "--task",
        choices=("single_label", "multilabel"),
        default="single_label",
        help="single_label: one shape per image (default); multilabel: any of the three "
        "shapes on one image, or none, listed in labels.csv (path,labels)",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train and publish a new version even when the store already has one",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="the port `ktl serve` will use next on 127.0.0.1 (make run passes it): refuse "
        "at once, before anything is trained, when something already listens there",
    )
    add_store(parser)
    add_json(parser, "print the training summary as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.store import ModelStore

    defaults = MULTILABEL_DEFAULTS if args.task == "multilabel" else {}
    args.data_dir = args.data_dir or defaults.get("data_dir", "demo_data")
    args.name = args.name or defaults.get("name", "demo")
    if args.port is not None:
        check_port_free("127.0.0.1", args.port)
    store = ModelStore(args.store)
    if store.versions(args.name) and not args.retrain:
        if not Path(args.data_dir).is_dir():  # the examples that follow read it
            _write_dataset(args)
        return _reuse(args, store, store.default(args.name))
    _write_dataset(args)
    result = _train(args)
    print_json(result) if args.json else print_summary(result)
    return 0


def _write_dataset(args: argparse.Namespace) -> None:
    from training.dataset.demo import make_multilabel_dataset, make_shapes_dataset

    if args.task == "multilabel":
        note(f"Writing the multi-label demo dataset (shapes in any combination) to {args.data_dir}")
        make_multilabel_dataset(args.data_dir, images=DEMO_MULTILABEL_IMAGES)
        return
    note(f"Writing the demo dataset (circles, squares, triangles) to {args.data_dir}")
    make_shapes_dataset(args.data_dir, per_class=DEMO_IMAGES_PER_CLASS)


def _reuse(args: argparse.Namespace, store: ModelStore, version: int) -> int:
    """Nothing to train: say which version is there (the one served by default)."""
    path = store.version_dir(args.name, version)
    note(
        f"{args.name} version {version} is already published in {args.store}: reusing it, "
        "nothing trained (--retrain, or make run RETRAIN=1, trains a new version)"
    )
    if args.json:
        print_json({"name": args.name, "version": version, "path": str(path), "reused": True})
    else:
        print(f"Reusing {args.name} version {version} ({path})")
    return 0


def _train(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune Lite0's ImageNet features when its weights are at hand, else smallcnn
    from scratch; the job's result."""
    from models.networks.backbones import get_backbone
    from models.networks.classifier import WeightsUnavailable, build_backbone
    from training.config import build_config
    from training.job import run_job

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
    data, task = args.data_dir, {}
    if args.task == "multilabel":
        data, task = str(Path(args.data_dir) / "labels.csv"), {"task": "multilabel"}
    config = build_config(
        {}, {"data": data, "name": args.name, "store": args.store, **settings, **task}
    )
    return run_job(config).to_json()
