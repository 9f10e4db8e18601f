"""``ktl doctor DATA --out DIR``: label issues, near-duplicates, odd images and
balance of a dataset, before training on it (``training.diagnosis.doctor``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.commands.train import add_capture_dir, add_option_flags
from cli.common import add_json, add_store, print_json

_SHOWN = 5  # suspects of each kind named in the summary; the CSV has them all


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "doctor",
        help="find label issues, near-duplicates and odd images in a dataset",
        description="Examine DATA as ktl train reads it: out-of-sample predictions for every "
        "image (k-fold) ranked by confident learning into label issues, near-duplicate groups "
        "(and those spanning train/val/test), odd images, class balance. Writes "
        "suspects.csv (edit its action column, then ktl train --exclude/--relabel it), "
        "report.html and doctor.json into --out.",
    )
    parser.add_argument("data", metavar="DATA", help="class folders, train/ val/ test/, or a CSV")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the report files")
    add_option_flags(parser, ["backbone"])
    parser.add_argument(
        "--weights",
        help="imagenet (default where the backbone has them), none, a weights file, or "
        "model:NAME[:VERSION] (a published version's backbone); without pretrained weights a "
        "small backbone is trained from scratch k-fold instead",
    )
    add_option_flags(parser, ["image_size", "batch_size", "task"])
    parser.add_argument("--folds", type=int, default=5, help="k of the k-fold (default 5)")
    split = parser.add_argument_group("the split, as ktl train would draw it (same defaults)")
    add_option_flags(split, ["val_split", "test_split", "seed"])
    review = parser.add_argument_group("the review, as ktl train --add-reviewed adds it")
    add_option_flags(review, ["add_reviewed"])
    add_capture_dir(review)
    add_store(parser)
    add_json(parser, "print the findings as one JSON object")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.errors import ConfigError
    from training.config import build_config

    if args.folds < 2:
        raise ConfigError("--folds must be at least 2")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: a file is there; give a folder for the report files")
    settings = {
        key: getattr(args, key)
        for key in (
            "backbone",
            "weights",
            "image_size",
            "batch_size",
            "task",
            "val_split",
            "test_split",
        )
    }
    settings.update(seed=args.seed, store=args.store, add_reviewed=args.add_reviewed)
    capture_dir = args.capture_dir or args.settings.capture_dir
    settings["capture_dir"] = str(capture_dir) if capture_dir else None
    config = build_config({}, {"data": args.data, "name": "doctor", **settings})
    from training.diagnosis.doctor import run_doctor
    from training.diagnosis.doctor_report import write_outputs

    result = run_doctor(config, folds=args.folds)
    result["files"] = write_outputs(result, args.out)
    print_json(result) if args.json else print_summary(result)
    return 0


def _named(rows: list[dict[str, Any]], text) -> list[str]:
    lines = [f"              {text(row)}" for row in rows[:_SHOWN]]
    if len(rows) > _SHOWN:
        lines.append(f"              ... {len(rows) - _SHOWN} more in suspects.csv")
    return lines


def print_summary(result: dict[str, Any]) -> None:
    """What a person reads after ``ktl doctor``."""
    p, rows = result["probe"], result["suspects"]
    multi = result.get("task") == "multilabel"  # label sets; accuracy per label
    lines = [
        f"Doctor's findings for {result['data']} ({result['layout']}): {result['images']} "
        f"images, {len(result['labels'])} {'labels' if multi else 'classes'}; "
        f"{len(result['skipped'])} skipped, {result['ignored_files']} non-image files ignored",
        f"  scored by   {p['description']}",
        f"  accuracy    {p['accuracy']:.1%} {'per label ' if multi else ''}out of sample ("
        f"{'each label its more common answer' if multi else 'always the largest class'}: "
        f"{p['majority_baseline']:.1%})",
    ]
    issues = [r for r in rows if r["kind"] == "label_issue"]
    if p.get("note"):
        lines.append(f"  labels      {p['note']}")
    if p.get("useful", not p.get("note")):  # a weak but useful probe's are listed, at review
        lines.append(f"  labels      {len(issues)} label issues, most suspect first:")
        lines += _named(
            issues,
            lambda r: (
                f"{r['path']}: {r['given_label'] or '(none)'} -> "
                f"{r['suggested_label'] or '(none)'} "
                f"(score {r['score']:.2f})"
            ),
        )
    lines += _duplicate_lines(result)
    odd = [r for r in rows if r["kind"] == "odd_image"]
    lines.append(f"  odd         {len(odd)} odd images" + (":" if odd else ""))
    lines += _named(odd, lambda r: f"{r['path']}: {r['reason']}")
    lines += _balance_lines(result["balance"])
    for item in result["skipped"][:_SHOWN]:
        lines.append(f"  skipped     {item['reason']}")
    files = result.get("files", {})
    if files:
        lines.append(f"  wrote       {files['csv']} (edit its action column), {files['html']}")
    lines.append(f"  took        {result['seconds']:.1f} s")
    print("\n".join(lines))


def _duplicate_lines(result: dict[str, Any]) -> list[str]:
    groups = result["near_duplicate_groups"]
    images = sum(len(g["members"]) for g in groups)
    lines = [f"  duplicates  {len(groups)} groups of near-duplicates ({images} images)"]
    for group in groups[:_SHOWN]:
        where = f"; WARNING: spans {'/'.join(group['splits'])}" if group["across_splits"] else ""
        lines.append(f"              {', '.join(group['paths'])}{where}")
    across = sum(g["across_splits"] for g in groups)
    if across:
        lines.append(
            f"              {across} groups span train and val/test: ktl train leaves their "
            "val/test members out of those splits"
        )
    return lines


def _balance_lines(balance: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{label} {c['images']}" for label, c in balance["classes"].items())
    weights = balance["class_weights"]
    used = (
        "class weights " + ", ".join(f"{label} {w:.2f}" for label, w in weights.items())
        if weights
        else "no class weights needed"
    )
    return [
        f"  balance     {counts}; largest/smallest {balance['imbalance_ratio']:.2f} in "
        f"training: {used}"
    ]
