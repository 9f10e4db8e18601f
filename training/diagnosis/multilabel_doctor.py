"""``ktl doctor`` on a multi-label CSV (``path,labels``): label issues by cleanlab's
multi-label confident learning on out-of-sample sigmoid probabilities, near-duplicates
and odd images as for single-label data, and each label's counts by split.

The probabilities come from ``training.diagnosis.probe.multilabel_probe``: the frozen
backbone's pooled features computed once, then one logistic regression per label
fitted k times (each image scored by the fold that did not see it). A backbone
without pretrained weights is refused: training one from scratch k times is the
single-label doctor's only.
"""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np

from models.near_duplicates import look_at_files
from models.networks.backbones import get_backbone
from models.preprocessing import decode_images
from training.config import TrainConfig
from training.dataset.data import DataError
from training.dataset.splits import SPLITS, content_hashes
from training.diagnosis import probe, suspects
from training.diagnosis.doctor import Log, findings, probe_backbone, source_of, weak_probe_note
from training.multilabel.data import MultiListing, list_multilabel, split_multilabel
from training.multilabel.recipe import positive_weights


def run_multilabel_doctor(config: TrainConfig, folds: int, log: Log) -> dict:
    """``run_doctor`` for a multi-label CSV: the same findings, label sets in the
    ``given_label`` and ``suggested_label`` of its rows (``;`` between labels)."""
    started = time.monotonic()
    listing = list_multilabel(config.data)
    spec = get_backbone(config.backbone)
    backbone = probe_backbone(spec, config)
    if backbone is None:
        raise DataError(
            f"ktl doctor on a multi-label CSV reads a pretrained backbone's features, and "
            f"{spec.name} has none here: give --weights imagenet (or a file, or "
            "model:NAME), or a backbone with ImageNet weights such as efficientnet_lite0"
        )
    size = config.resolved_image_size()
    samples = listing.samples
    hashes, skipped, drawn, looks = _read(listing, config, log)
    readable = [i for i, h in enumerate(hashes) if h is not None and looks[i] is not None]
    log(f"Decoding {len(readable):,} images at {size[0]}x{size[1]} ...")
    good, pixels = _decode(listing, readable, size, skipped)
    targets = listing.targets()[good]
    log(f"Computing {spec.name} features of {len(good):,} images ...")
    features = probe.backbone_features(spec, backbone, pixels)
    fold = probe.assign_folds(np.zeros(len(good), np.int64), folds, config.seed)
    probabilities = probe.multilabel_probe(features, targets, fold)
    quality = probe.multilabel_accuracy(probabilities, targets)
    issues = suspects.multilabel_issue_rows(
        probabilities, targets, listing.labels, quality["strong"]
    )
    note = weak_probe_note(quality, len(issues))
    if note:
        quality["note"] = note
    description = (
        f"a linear probe (one logistic regression per label, {len(np.unique(fold))}-fold) on "
        f"{spec.name} features (weights: {source_of(config)})"
    )
    given = [suspects.label_set(listing.labels, row >= 0.5) for row in targets]
    found = {
        "good": good,
        "given": given,
        "splits": [drawn.splits[i] for i in good],
        "looks": [looks[i] for i in good],
        "hashes": [hashes[i] for i in good],
        "skipped": skipped,
        "labels": listing.labels,
        "balance": _balance(listing, targets, [drawn.splits[i] for i in good]),
        "test_split": drawn.test_split,
        "folds": len(np.unique(fold)),
    }
    probed = {"method": "linear_probe", "description": description, **quality}
    result = findings(config, samples, found, issues, features, probed, size)
    result.update(layout="csv (multi-label)", task="multilabel", ignored_files=0)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _read(listing: MultiListing, config: TrainConfig, log: Log) -> tuple:
    """Content hashes, the files that cannot be read, the split training would draw,
    and a look at every file."""
    samples = listing.samples
    log(f"Reading {len(samples):,} files ...")
    hashes, skipped = content_hashes(cast(Any, samples))
    drawn = split_multilabel(
        listing, hashes, val_split=config.val_split, test_split=config.test_split, seed=config.seed
    )
    looks, errors = look_at_files([s.path for s in samples])
    skipped += [
        {"path": str(samples[i].path), "reason": reason}
        for i, reason in errors.items()
        if hashes[i] is not None
    ]
    return hashes, skipped, drawn, looks


def _decode(
    listing: MultiListing, rows: list[int], size: tuple[int, int], skipped: list[dict]
) -> tuple[list[int], np.ndarray]:
    """The images at ``rows`` that decode at ``size``, and their pixels; the others
    go into ``skipped``."""
    pixels, kept = [], []

    def skip(image: Any) -> None:
        path = str(listing.samples[rows[image.position]].path)
        skipped.append({"path": path, "reason": image.reason})

    for image in decode_images([listing.samples[i].path for i in rows], size, skip):
        pixels.append(image.pixels)
        kept.append(rows[image.position])
    if not kept:
        raise DataError(f"{listing.samples[0].path.parent}: no image could be decoded")
    return kept, np.stack(pixels)


def _balance(listing: MultiListing, targets: np.ndarray, splits: list[str | None]) -> dict:
    """Each label's images by split, as training with the same settings would draw
    them, and the weight training would give its positives (``positive_weights``)."""
    where = np.array([s or "" for s in splits])
    counts = {
        label: {name: int(targets[where == name, k].sum()) for name in SPLITS}
        for k, label in enumerate(listing.labels)
    }
    train = [counts[label]["train"] for label in listing.labels]
    weights = positive_weights(targets[where == "train"]) if (where == "train").any() else None
    return {
        "classes": {label: {"images": sum(c.values()), **c} for label, c in counts.items()},
        "imbalance_ratio": round(max(train) / max(1, min(train)), 3),
        "class_weights": (
            {label: round(float(w), 6) for label, w in zip(listing.labels, weights, strict=True)}
            if weights is not None and (weights > 1).any()
            else None
        ),
        "none": {name: int((targets[where == name].sum(axis=1) == 0).sum()) for name in SPLITS},
    }
