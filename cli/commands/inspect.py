"""``ktl inspect``: a backbone's or a published model's layers, with the output
size each convolution and pooling should give next to what Keras reports."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import DEFAULT_VERSION, add_json, add_store, load_model, note, print_json
from models.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "inspect",
        help="per-layer kernel, stride, padding, output shape and parameters",
        description="Show a backbone's (without head) or a published model's layers: kernel F, "
        "stride S, padding P, filters, output shape, parameters, and each convolution's and "
        "pooling's output size by (W - F + 2P) / S + 1 next to what Keras reports.",
    )
    parser.add_argument("backbone", nargs="?", metavar="BACKBONE", help="a name of `ktl backbones`")
    parser.add_argument("--name", help="a published model instead of a backbone")
    parser.add_argument(
        "--version", type=int, help=f"version of --name (default: {DEFAULT_VERSION})"
    )
    parser.add_argument("--image-size", type=int, help="input size for BACKBONE (default: its own)")
    parser.add_argument("--filters", metavar="OUT.png", help="also write the first conv's filters")
    add_store(parser)
    add_json(parser, "print the report as JSON")
    return parser


def _cached_imagenet(backbone: str) -> str | None:
    """ "imagenet" when the backbone's ImageNet file is already in Keras' cache (nothing
    is downloaded just to draw filters), else None."""
    from models.networks.backbones import get_backbone
    from models.networks.classifier import keras_cache_path

    spec = get_backbone(backbone)
    return "imagenet" if spec.pretrained and keras_cache_path(spec).is_file() else None


def run(args: argparse.Namespace) -> int:
    from models.insight.inspect import inspect_backbone, inspect_bundle, render_text

    if (args.backbone is None) == (args.name is None):
        raise ConfigError("give a BACKBONE or --name NAME (not both)")
    if args.name is not None:
        bundle = load_model(args)
        model, report = bundle.model, inspect_bundle(bundle)
    else:
        weights = _cached_imagenet(args.backbone) if args.filters else None
        model, report = inspect_backbone(args.backbone, args.image_size, weights)
    if args.filters:
        from models.insight.explain import filter_grid_png, first_conv_kernel

        layer, kernel = first_conv_kernel(model)
        Path(args.filters).write_bytes(filter_grid_png(kernel))
        note(f"Wrote {min(kernel.shape[-1], 64)} filters of {layer} to {args.filters}")
        if args.name is None and weights is None:
            note(
                f"These filters are RANDOM: {args.backbone} was built without learnt weights "
                "(none exist, or its ImageNet file is not in Keras' cache), so they show noise, "
                "not features. `ktl inspect --name MODEL --filters OUT.png` draws a trained "
                "model's filters."
            )
    print_json(report) if args.json else print(render_text(report))
    return 0
