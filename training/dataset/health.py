"""A dataset's health report: counts per class and split, copies, skipped files,
class imbalance and the class weights training uses, and warnings in plain words."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from training.dataset import held_out
from training.dataset.splits import SPLITS

if TYPE_CHECKING:
    from training.dataset.data import Listing

IMBALANCE_RATIO = 1.5  # largest / smallest class above this: class weights are used
STRONG_IMBALANCE_RATIO = 3.0  # ... and above this it is reported as strong


def health_report(listing: Listing, labels, hashes, good, parts, leaked, skipped, near=()) -> dict:
    """The report of a split, decoded dataset (``training.dataset.data.prepare``)."""
    samples = listing.samples
    groups: dict[str, list[int]] = defaultdict(list)
    for i in good:
        groups[hashes[i]].append(i)
    counts = {name: Counter(samples[i].label for i in parts[name]) for name in SPLITS}
    return finish_report(
        {
            "layout": listing.layout,
            "classes": {label: {name: counts[name][label] for name in SPLITS} for label in labels},
            "train_images": len(parts["train"]),
            "val_images": len(parts["val"]),
            "test_images": len(parts["test"]),
            "skipped": skipped,
            "ignored_files": len(listing.ignored),
            "duplicates": [
                {
                    "files": [str(samples[i].path) for i in members],
                    "labels": sorted({samples[i].label for i in members}),
                }
                for members in groups.values()
                if len(members) > 1
            ],
            "removed_from_val": [str(samples[i].path) for i in leaked],
            "removed_near_copies": [str(samples[i].path) for i in near],
            "content_hash": hashlib.sha256(
                "".join(sorted(f"{hashes[i]}:{samples[i].label}" for i in good)).encode()
            ).hexdigest(),
            **({"corrections": listing.corrections} if listing.corrections else {}),
        }
    )


def finish_report(report: dict) -> dict:
    """Add the imbalance ratio, class weights and warnings that follow from a
    report's counts and lists."""
    warnings: list[str] = []
    duplicates = report["duplicates"]
    if duplicates:
        extra = sum(len(d["files"]) - 1 for d in duplicates)
        warnings.append(f"{len(duplicates)} groups of identical images ({extra} extra copies)")
    conflicting = [d for d in duplicates if len(d["labels"]) > 1]
    if conflicting:
        warnings.append(f"{len(conflicting)} identical images carry different labels")
    if report["removed_from_val"]:
        warnings.append(
            f"{len(report['removed_from_val'])} validation images are copies of training images "
            "and were left out of validation"
        )
    if report.get("removed_near_copies"):
        warnings.append(
            f"{len(report['removed_near_copies'])} validation/test images are near-copies of "
            "training images (resized, re-encoded or cropped) and were left out of them"
        )
    labels = list(report["classes"])
    ratio, class_weights = balance([report["classes"][label]["train"] for label in labels])
    if class_weights:
        strength = "strong " if ratio > STRONG_IMBALANCE_RATIO else ""
        warnings.append(
            f"{strength}class imbalance (largest/smallest = {ratio:.1f}); training uses class "
            "weights"
        )
    if report["skipped"]:
        warnings.append(
            f"{len(report['skipped'])} files were skipped: unreadable, undecodable, or links "
            "out of the dataset"
        )
    warnings += split_size_warnings(report)
    return {
        **report,
        "imbalance_ratio": round(ratio, 3),
        "class_weights": class_weights,
        "warnings": warnings,
    }


def balance(train_counts: list[int]) -> tuple[float, dict[str, float] | None]:
    """The largest/smallest class ratio of the training split, and the class weights
    training uses (``{class index: weight}``, balanced), None below the ratio."""
    ratio = max(train_counts) / max(1, min(train_counts))
    if ratio <= IMBALANCE_RATIO:
        return ratio, None
    total = sum(train_counts)
    return ratio, {
        str(k): round(total / (len(train_counts) * max(1, count)), 6)
        for k, count in enumerate(train_counts)
    }


# Below these a split is too small for its job: to learn a class from, or to
# measure a model on (one image then moves accuracy by more than 3 points).
MIN_TRAIN_PER_CLASS = 5
MIN_VAL_IMAGES = 30


def split_size_warnings(report: dict) -> list[str]:
    """Plain words when the split leaves too little to train on or to measure with."""
    warnings = []
    train, val = report["train_images"], report["val_images"]
    few = sorted(
        label for label, n in report["classes"].items() if n["train"] < MIN_TRAIN_PER_CLASS
    )
    if few:
        warnings.append(
            f"too few training images to learn from in {', '.join(few)} (under "
            f"{MIN_TRAIN_PER_CLASS} each): add images or lower --val-split"
        )
    if train < val:
        warnings.append(
            f"the training split ({train} images) is smaller than validation ({val}): "
            "lower --val-split (0.2 is usual)"
        )
    if val < MIN_VAL_IMAGES:
        warnings.append(
            f"only {val} validation images: one image moves accuracy by {100 / val:.1f} points, "
            "so the figures are rough"
        )
    return warnings


def merge_reports(reports: list[dict]) -> dict:
    """One report for a dataset whose shards were prepared apart (one per worker).
    Copies are only found within a shard."""
    first = reports[0]
    return finish_report(
        {
            "layout": first["layout"],
            "classes": {
                label: {side: sum(r["classes"][label][side] for r in reports) for side in SPLITS}
                for label in first["classes"]
            },
            "train_images": sum(r["train_images"] for r in reports),
            "val_images": sum(r["val_images"] for r in reports),
            "test_images": sum(r.get("test_images", 0) for r in reports),
            "test_split": first.get("test_split", 0.0),
            "test_note": first.get("test_note"),
            "skipped": [item for r in reports for item in r["skipped"]],
            "ignored_files": first["ignored_files"],
            "duplicates": [item for r in reports for item in r["duplicates"]],
            "removed_from_val": [item for r in reports for item in r["removed_from_val"]],
            "removed_near_copies": [i for r in reports for i in r.get("removed_near_copies", [])],
            "content_hash": hashlib.sha256(
                "".join(r["content_hash"] for r in reports).encode()
            ).hexdigest(),
            "shards": len(reports),
            **({"corrections": first["corrections"]} if "corrections" in first else {}),
            **(
                {"original_test": held_out.merge([r["original_test"] for r in reports])}
                if "original_test" in first
                else {}
            ),
        }
    )
