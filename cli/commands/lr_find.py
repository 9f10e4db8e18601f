"""``ktl lr-find DATA [train options]``: the learning-rate range test of each phase
alone, as ``ktl train --lr auto`` runs it; prints the suggestions, saves the plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.commands.train import add_train_options, train_config
from cli.common import print_json

DEFAULT_OUT = "lr_find"


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "lr-find",
        help="suggest learning rates with a range test, without training a model",
        description="Run the learning-rate range test of each phase of `ktl train` on DATA "
        "(the same options) and print the suggested rates; nothing is published. Before "
        "the fine-tuning phase's test, the head trains at its suggested rate, as "
        "`ktl train --lr auto` does.",
    )
    add_train_options(parser)
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=DEFAULT_OUT,
        help=f"folder for the plots lr_find_<phase>.png (default ./{DEFAULT_OUT})",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.name is None:  # nothing is published: the name only labels the job
        args.name = "lr-find"
    config = train_config(args, ignore=("out",))  # checked before TensorFlow is imported
    from training.job import find_rates
    from training.publishing.report import lr_find_png

    found = find_rates(config)
    out.mkdir(parents=True, exist_ok=True)
    for phase, test in found.items():
        (out / f"lr_find_{phase}.png").write_bytes(lr_find_png(phase, test))
    if args.json:
        print_json(
            {
                phase: {**test, "plot": str(out / f"lr_find_{phase}.png")}
                for phase, test in found.items()
            }
        )
        return 0
    flags = {"head": "--lr", "scratch": "--lr", "fine_tune": "--fine-tune-lr"}
    for phase, test in found.items():
        print(
            f"{phase:10s}  suggested {flags[phase]} {test['suggestion']:.2g}  "
            f"(plot: {out / f'lr_find_{phase}.png'})"
        )
    return 0
