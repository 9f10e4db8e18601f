"""``ktl export``: a published model for another runtime."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import add_json, add_model, add_store, load_model, note, print_json
from models.choices import EXPORT_FORMATS
from models.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "export",
        help="export a published model as a SavedModel, ONNX or TFLite",
        description="Write a published model for another runtime under OUT/<name>/<version>/: "
        "savedmodel (TensorFlow Serving base path OUT/<name>; serving_default takes encoded "
        "images), onnx or tflite (uint8 pixels at the model's size). The model store is "
        "never written to.",
    )
    add_model(parser)
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS, dest="format")
    parser.add_argument("--out", default="exports", help="export folder (default ./exports)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="tflite only: INT8 weights and activations, ranges measured on --calibration "
        "images, checked by LiteRT against the Keras model on DATA's validation split",
    )
    parser.add_argument(
        "--calibration",
        metavar="DATA",
        help="with --int8: labelled images in a layout ktl train reads (its train split "
        "calibrates, its validation split checks)",
    )
    add_store(parser)
    add_json(parser, "print the written path as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.engines.export import check_outside_store, export_bundle

    if args.int8 != bool(args.calibration):
        raise ConfigError("--int8 and --calibration DATA go together (tflite only)")
    check_outside_store(args.out, args.store)
    bundle = load_model(args)
    calibration, checked = _calibration(bundle, args.calibration) if args.int8 else (None, None)
    path = export_bundle(bundle, args.format, args.out, calibration)
    result: dict[str, Any] = {
        "name": bundle.name,
        "version": bundle.version,
        "format": args.format,
        "path": str(path),
    }
    if checked is not None:
        result["int8_agreement"] = _agreement(bundle, path, checked)
    if args.json:
        print_json(result)
        return 0
    print(f"Exported {bundle.name} version {bundle.version} as {args.format}: {path}")
    if checked is not None:
        figures = result["int8_agreement"]
        print(
            f"  LiteRT INT8 vs the Keras model on {figures['images']} validation images: "
            f"top-1 agreement {figures['top1_agreement']:.1%}, same decision "
            f"{figures['decision_agreement']:.1%}, max probability difference "
            f"{figures['max_abs_diff']:.4f}"
        )
    return 0


def _calibration(bundle, data: str):
    """Images of DATA's train split (the representative images) and its validation
    split (the check), drawn with the version's own settings."""
    from models.engines.int8 import CALIBRATION_IMAGES
    from training.evaluation.scoring import decoded_split, listed

    source = listed(data)
    train = decoded_split(bundle, source, "train", note, at_most=CALIBRATION_IMAGES)
    return train.pixels, decoded_split(bundle, source, "val", note)


def _agreement(bundle, path, checked) -> dict[str, Any]:
    from models.decision import threshold_of
    from models.engines.export import tflite_runner
    from models.engines.int8 import agreement

    reference = bundle.classifier.predict(checked.pixels)
    exported = tflite_runner(path)(checked.pixels)
    return agreement(reference, exported, checked.targets, threshold_of(bundle.metadata.decision))
