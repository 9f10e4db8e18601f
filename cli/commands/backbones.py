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
    from models.networks.backbones import list_backbones

    rows = [
        {
            "name": s.name,
            "family": s.family,
            "default_size": s.default_size,
            "params": s.params,
            "preprocessing": s.preprocessing,
            "imagenet_weights": s.pretrained,
            "weights_package": s.weights_package,
            "unfreeze_from": s.unfreeze_from,
        }
        for s in list_backbones()
    ]
    if args.json:
        print_json(rows)
        return 0
    # Each text column as wide as its longest entry, so no name runs into the next one.
    name_w, family_w, prep_w = (
        max(len(column), *(len(str(r[column])) for r in rows)) + 2
        for column in ("name", "family", "preprocessing")
    )
    print(
        f"{'name':<{name_w}}{'family':<{family_w}}{'size':>5}{'parameters':>13}  "
        f"{'preprocessing':<{prep_w}}imagenet"
    )
    for r in rows:
        print(
            f"{r['name']:<{name_w}}{r['family']:<{family_w}}{r['default_size']:>5}"
            f"{r['params']:>13,}  {r['preprocessing']:<{prep_w}}{_imagenet(r)}"
        )
    return 0


def _imagenet(row: dict) -> str:
    if not row["imagenet_weights"]:
        return _WITHOUT
    return "yes, shipped with ktl (offline)" if row["weights_package"] else "yes (download)"
