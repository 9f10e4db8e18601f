"""``ktl export``: a published model for another runtime."""

from __future__ import annotations

import argparse

from cli.common import add_json, add_model, add_store, load_model, print_json
from models.choices import EXPORT_FORMATS


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
    add_store(parser)
    add_json(parser, "print the written path as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.export import check_outside_store, export_bundle

    check_outside_store(args.out, args.store)
    bundle = load_model(args)
    path = export_bundle(bundle, args.format, args.out)
    if args.json:
        print_json(
            {"name": bundle.name, "version": bundle.version, "format": args.format,
             "path": str(path)}
        )  # fmt: skip
    else:
        print(f"Exported {bundle.name} version {bundle.version} as {args.format}: {path}")
    return 0
