"""``ktl compare DATA --backbones a,b,c``: which backbone's features suit DATA
best, by a cross-validated linear probe on each (``training.evaluation.compare``)."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import add_json, note, print_json


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "compare",
        help="rank backbones on your data before training (a linear probe on each)",
        description="For each backbone whose weights are at hand (ImageNet weights already "
        "in Keras' cache, or --weights NAME=FILE), compute its features of DATA's training "
        "and validation images once and cross-validate a linear probe on them (5-fold): "
        "accuracy with its 95 % interval, seconds and parameters, and the pick (the most "
        "accurate; a tie, as many images right, goes to the cheaper model). The test split "
        "ktl train would hold out is never looked at. Candidates without weights are listed "
        "as skipped, with the reason.",
    )
    parser.add_argument("data", metavar="DATA", help="class folders, train/ val/ test/, or a CSV")
    parser.add_argument(
        "--backbones",
        required=True,
        metavar="A,B,C",
        help="candidates from `ktl backbones`, comma-separated",
    )
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a weights file for one candidate (repeatable), e.g. resnet50=resnet50_notop.h5",
    )
    parser.add_argument(
        "--image-size", type=int, help="one input size for all (default: each backbone's)"
    )
    parser.add_argument("--seed", type=int, default=42, help="split and folds (default 42)")
    add_json(parser, "print the table and the pick as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from training.evaluation.compare import compare_backbones, parse_weight_files

    names = [name.strip() for name in args.backbones.split(",") if name.strip()]
    result = compare_backbones(
        args.data,
        names,
        parse_weight_files(args.weights),
        args.image_size,
        {"seed": args.seed},
        log=note,
    )
    print_json(result) if args.json else print_table(result)
    return 0 if result["pick"] else 2


def print_table(result: dict[str, Any]) -> None:
    print(
        f"{result['images']} images of {len(result['classes'])} classes, "
        f"{result['folds']}-fold linear probe; always the largest class: "
        f"{result['baseline']:.3f}"
    )
    print(f"{'backbone':<18}{'accuracy':>9}  {'95 % CI':<11}{'seconds':>8}{'params':>13}  weights")
    for row in sorted(result["candidates"], key=lambda r: (-r["right"], r["params"])):
        low, high = row["accuracy_interval"]
        print(
            f"{row['backbone']:<18}{row['accuracy']:>9.3f}  {low:.2f}-{high:.2f}  "
            f"{row['seconds']:>8.1f}{row['params']:>13,}  {row['weights']}"
        )
    for row in result["skipped"]:
        print(f"{row['backbone']:<18}  skipped: {row['reason']}")
    if result["pick"]:
        print(f"Pick: {result['pick']} (ktl train DATA --backbone {result['pick']} ...)")
    else:
        print("No candidate had weights at hand: nothing to compare")
