"""``ktl backbones``: the registry's backbones."""

from __future__ import annotations

import argparse

from cli.common import add_json, print_json

# How a backbone without ImageNet weights trains: any --weights but imagenet.
_WITHOUT = "no (from scratch, a weights file or model:NAME)"


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "backbones",
        help="list the backbones",
        description="List backbones: family, default size, parameters (without head), "
        "preprocessing, ImageNet weights.",
    )
    add_json(parser, "print a JSON list")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.backbones import list_backbones

    rows = [
        {
            "name": s.name,
            "family": s.family,
            "default_size": s.default_size,
            "params": s.params,
            "preprocessing": s.preprocessing,
            "imagenet_weights": s.pretrained,
            "unfreeze_from": s.unfreeze_from,
        }
        for s in list_backbones()
    ]
    if args.json:
        print_json(rows)
        return 0
    print(f"{'name':<15}{'family':<13}{'size':>5}{'parameters':>13}  {'preprocessing':<14}imagenet")
    for r in rows:
        print(
            f"{r['name']:<15}{r['family']:<13}{r['default_size']:>5}{r['params']:>13,}  "
            f"{r['preprocessing']:<14}"
            f"{'yes' if r['imagenet_weights'] else _WITHOUT}"
        )
    return 0
