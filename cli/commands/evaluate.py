"""``ktl evaluate NAME[:VERSION] DATA``: a published version's figures on labelled
data, with intervals, without training; what compares versions."""

from __future__ import annotations

import argparse
from typing import Any

from cli import summary
from cli.common import MODEL_HELP, add_json, add_store, print_json
from cli.multilabel_summary import print_multilabel_scores


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "evaluate",
        help="score a published version on labelled data",
        description="Score a published version on labelled DATA (the layouts ktl train reads) "
        "without training: accuracy with its 95 % interval, per-class figures, calibration "
        "(ECE, NLL, Brier) and what its decision threshold answers. Every image of DATA is "
        "scored, and a warning says how many of them the version trained or validated on; "
        "--split test scores only DATA's test split as the version's own settings draw it "
        "(the images it was tested on, when DATA is the data it was trained on).",
    )
    parser.add_argument("model", metavar="NAME[:VERSION]", help=MODEL_HELP)
    parser.add_argument("data", metavar="DATA", help="class folders, train/ val/ test/, or a CSV")
    parser.add_argument(
        "--split",
        default="all",
        choices=("all", "test", "val", "train"),
        help="which images of DATA to score: all (default), or one split of DATA as the "
        "version's settings draw it",
    )
    add_store(parser)
    add_json(parser, "print the figures as one JSON object")
    return parser


def run(args: argparse.Namespace) -> int:
    from cli.common import load_reference, note
    from models.store import open_store
    from training.evaluation.scoring import score_version

    bundle = load_reference(args.model, open_store(args.store, args.settings.cache_dir))
    result = score_version(bundle, args.data, args.split, log=note)
    print_json(result) if args.json else print_scores(result)
    return 0


def print_scores(result: dict[str, Any]) -> None:
    figures = result["figures"]
    if result.get("task") == "multilabel":
        return print_multilabel_scores(result)
    lines = [
        f"{result['name']} version {result['version']} on {result['data']} "
        f"({result['split']} split, content {result['fingerprint'][:12]})",
        summary.figures_line(result["split"], figures),
    ]
    c = result["calibration"]
    lines.append(f"  calibration ECE {c['ece']:.3f}, NLL {c['nll']:.3f}, Brier {c['brier']:.3f}")
    d = result["decision"]
    right = (
        f", {d['selective_accuracy']:.1%} of them right"
        if d.get("selective_accuracy") is not None
        else ""
    )
    lines.append(
        f"  decision    threshold {d['threshold']:.3f}: answers {d['coverage']:.1%}{right}"
    )
    if result["skipped"]:
        lines.append(f"  note        {len(result['skipped'])} files could not be read")
    lines += summary.class_table(figures)
    print("\n".join(lines))
