"""``ktl doctor DATA``: what in a dataset deserves a look before training on it.

The same ingestion as ``ktl train`` (layouts, skipped files, the split by content
hash with the same settings), then: out-of-sample probabilities for every image
(``training.diagnosis.probe``) ranked by confident learning into label issues; groups of
near-duplicates (``models.near_duplicates``), with the splits each spans; odd
images; per-class counts and the class weights training would use
(``training.diagnosis.suspects``). ``training.diagnosis.doctor_report`` writes the CSV,
JSON and HTML.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from models.errors import ConfigError
from models.near_duplicates import close_pairs, group_pairs, look_at_files
from models.networks.backbones import BackboneSpec, get_backbone
from models.networks.classifier import build_backbone, resolve_weights
from models.store import ModelStore
from training.config import TrainConfig
from training.dataset import held_out
from training.dataset.corrections import data_root
from training.dataset.data import (
    Listing,
    check_classes,
    decode_all,
    list_samples,
)
from training.dataset.health import balance
from training.dataset.reviewed import with_reviewed
from training.dataset.splits import SPLITS, content_hashes
from training.diagnosis import probe, suspects
from training.evaluation.evaluate import wilson
from training.fitting import warm_start
from training.multilabel.data import detect_task

Log = Callable[[str], None]
NEAR_MAJORITY = 0.05  # an accuracy this close to the largest class's share is "near" it


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_doctor(config: TrainConfig, folds: int = probe.FOLDS, log: Log = _stderr) -> dict:
    """Examine ``config.data`` with ``config``'s backbone, weights, image size and
    split settings; returns the findings (``ktl doctor --json`` prints them)."""
    started = time.monotonic()
    if detect_task(config.data, config.task) == "multilabel":
        from training.diagnosis.multilabel_doctor import run_multilabel_doctor

        if config.add_reviewed:
            raise ConfigError("--add-reviewed: a review gives one label per image, not a set")
        return run_multilabel_doctor(config, folds, log)
    listing = list_samples(config.data)
    if config.add_reviewed:  # the reviewed captures, as ktl train --add-reviewed adds them
        listing = with_reviewed(listing, config.add_reviewed, config.capture_dir)
    check_classes(Counter(s.label for s in listing.samples), "image files")
    spec = get_backbone(config.backbone)
    backbone = probe_backbone(spec, config)  # missing weights stop us before any decoding
    size = config.resolved_image_size()
    found = _ingest(listing, config, log)
    good, labels, targets = found["good"], found["labels"], found["targets"]
    samples = listing.samples
    pixels = np.zeros((len(good), *size, 3), np.uint8)
    log(f"Decoding {len(good):,} images at {size[0]}x{size[1]} ...")
    failed = decode_all([samples[i] for i in good], list(range(len(good))), size, pixels)
    if failed:  # decodes at the small size but not at this one: rare, but counted
        keep = sorted(set(range(len(good))) - {f["index"] for f in failed})
        found["skipped"] += [{"path": f["path"], "reason": f["reason"]} for f in failed]
        good, pixels, targets = [good[k] for k in keep], pixels[keep], targets[keep]
    fold = probe.assign_folds(targets, folds, config.seed)
    result = _probe(spec, config, backbone, pixels, targets, len(labels), fold, log)
    looks = [found["looks"][i] for i in good]
    return _findings(config, listing, found, good, looks, targets, result, size, started)


def probe_backbone(spec: BackboneSpec, config: TrainConfig) -> Any:
    """The backbone whose features the linear probe reads: with ImageNet weights, a
    weights file, or a published version's (``model:NAME[:VERSION]``, at its image
    size unless one is given); None when there are none (trained from scratch)."""
    assert config.weights is not None, "a validated config has its weights"
    if warm_start.is_warm_start(config.weights):
        parent = warm_start.load_parent(config.weights, ModelStore(config.store), spec.name)
        if config.image_size is None:
            config.image_size = parent.bundle.image_size[0]
        backbone = build_backbone(spec, config.resolved_image_size(), None)
        backbone.set_weights(parent.bundle.model.get_layer(backbone.name).get_weights())
        return backbone
    weights = resolve_weights(spec, config.weights)
    if weights is None and not spec.pretrained:
        return None
    with contextlib.redirect_stdout(sys.stderr):
        return build_backbone(spec, config.resolved_image_size(), weights)


def _ingest(listing: Listing, config: TrainConfig, log: Log) -> dict[str, Any]:
    """Content hashes, the split training would draw, and a look at every file."""
    samples = listing.samples
    log(f"Reading {len(samples):,} files ...")
    hashes, skipped = content_hashes(samples)
    assignment, _ = held_out.draw(  # reviewed images (--add-reviewed) drawn as training does
        listing,
        hashes,
        [],
        val_split=config.val_split,
        test_split=config.test_split,
        seed=config.seed,
    )
    looks, errors = look_at_files([s.path for s in samples])
    skipped += [
        {"path": str(samples[i].path), "reason": reason}
        for i, reason in errors.items()
        if hashes[i] is not None
    ]
    good = [i for i, h in enumerate(hashes) if h is not None and looks[i] is not None]
    check_classes(Counter(samples[i].label for i in good), "readable images")
    labels = sorted({samples[i].label for i in good})
    index_of = {label: k for k, label in enumerate(labels)}
    targets = np.array([index_of[samples[i].label] for i in good], np.int64)
    return {
        "hashes": hashes,
        "splits": assignment.splits,
        "test_split": assignment.test_split,
        "looks": looks,
        "skipped": skipped,
        "good": good,
        "labels": labels,
        "targets": targets,
    }


def _probe(spec, config, backbone, pixels, targets, classes, fold, log) -> probe.ProbeResult:
    if backbone is None:
        log(
            f"No pretrained weights for {spec.name}: training it from scratch "
            f"{len(np.unique(fold))} times"
        )
        return probe.probe_from_scratch(
            spec,
            pixels,
            targets,
            classes,
            fold,
            seed=config.seed,
            batch_size=config.batch_size,
            log=log,
        )
    log(f"Computing {spec.name} features of {len(pixels):,} images ...")
    features = probe.backbone_features(spec, backbone, pixels)
    return probe.probe_features(
        features, targets, classes, fold, f"{spec.name} features (weights: {source_of(config)})"
    )


def source_of(config: TrainConfig) -> str:
    """Where the probe's backbone weights came from, for a person."""
    source = str(config.weights)
    if source not in ("imagenet", "none") and not warm_start.is_warm_start(source):
        source = "file " + source
    return source


def _findings(config, listing, found, good, looks, targets, result, size, started) -> dict:
    samples, labels = listing.samples, found["labels"]
    quality = result.quality
    issues = suspects.label_issue_rows(result.probabilities, targets, labels, quality["strong"])
    note = weak_probe_note(quality, len(issues))
    if note:
        quality["note"] = note
    given = [samples[i].label for i in good]
    splits = [found["splits"][i] for i in good]
    shared = {
        "good": good,
        "given": given,
        "splits": splits,
        "looks": looks,
        "hashes": [found["hashes"][i] for i in good],
        "skipped": found["skipped"],
        "labels": labels,
        "balance": _balance(labels, given, splits, found["test_split"], config),
        "test_split": found["test_split"],
        "folds": len(np.unique(result.folds)),
    }
    probed = {"method": result.method, "description": result.description, **quality}
    out = findings(config, samples, shared, issues, result.features, probed, size)
    out.update(layout=listing.layout, ignored_files=len(listing.ignored))
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def findings(config, samples, found, issues, features, probed, size) -> dict:
    """The findings both doctors return: ``found`` holds, for the ``good`` images
    (indices into ``samples``), their given labels, splits, looks and hashes, with the
    skipped files, the labels, the balance, the test share and the folds."""
    root = data_root(config.data)
    good, given, looks = found["good"], found["given"], found["looks"]
    pairs = close_pairs(looks, exact=found["hashes"])
    dup_rows, groups = suspects.duplicate_rows(
        group_pairs(len(good), pairs), looks, given, found["splits"]
    )
    odd = suspects.odd_rows(looks, given, features, size)
    rows = (issues if probed["useful"] else []) + dup_rows + odd
    for row in rows:
        row["path"] = os.path.relpath(samples[good[row["index"]]].path, root)
    for group in groups:
        group["paths"] = [os.path.relpath(samples[good[i]].path, root) for i in group["members"]]
    return {
        "data": str(config.data),
        "root": str(root.resolve()),
        "images": len(good),
        "labels": found["labels"],
        "skipped": found["skipped"],
        "probe": probed,
        "label_issues": len(issues) if probed["useful"] else 0,
        "near_duplicate_groups": groups,
        "odd_images": len(odd),
        "balance": found["balance"],
        "suspects": rows,
        "settings": {
            "backbone": config.backbone,
            "weights": config.weights,
            "image_size": list(size),
            "seed": config.seed,
            "val_split": config.val_split,
            "test_split": found["test_split"],
            "folds": found["folds"],
        },
    }


def weak_probe_note(quality: dict, issues: int) -> str | None:
    """What a probe too weak to list (not useful) or to pre-fill ``exclude`` (not
    strong) means for its label suggestions; "near" the largest class only within
    ``NEAR_MAJORITY`` of it, and noise also when the accuracy's Wilson interval reaches
    down to the largest class's share (too few images to tell them apart)."""
    accuracy, majority = quality["accuracy"], quality["majority_baseline"]
    if quality["strong"]:
        return None
    if quality["useful"]:
        return (
            f"out-of-sample accuracy {accuracy:.1%} closes {quality['skill']:.0%} of the gap "
            f"between always answering the largest class ({majority:.1%}) and a perfect score, "
            f"under the {probe.STRONG_SKILL:.0%} that makes most suggestions right: the "
            f"{issues} label issues are pre-filled review, not exclude"
        )
    images = int(quality.get("images", 0))
    low = wilson(round(accuracy * images), images)[0] if images else 0.0
    noise = "the features do not tell the classes apart, so the {} label suggestions are noise"
    if accuracy - majority <= NEAR_MAJORITY:
        how, verdict = f"is near always answering the largest class ({majority:.1%})", noise
    elif low <= majority:  # on this few images, not shown better than that
        how = (
            f"is {(accuracy - majority) * 100:.1f} points above always answering the largest "
            f"class ({majority:.1%}), within chance on {images} images (95 % interval from "
            f"{low:.1%})"
        )
        verdict = noise
    else:
        how = (
            f"is {(accuracy - majority) * 100:.1f} points above always answering the largest "
            f"class ({majority:.1%}) but closes only {quality['skill']:.0%} of the gap to a "
            f"perfect score (listing needs {probe.USEFUL_SKILL:.0%})"
        )
        verdict = "the features tell the classes apart too poorly for its {} label suggestions"
    return f"out-of-sample accuracy {accuracy:.1%} {how}: {verdict.format(issues)}; not listed"


def _balance(labels, given, splits, test_split, config) -> dict:
    """Per-class counts by split, as training with the same settings would draw
    them, and the class weights it would use."""
    counts = {
        label: {
            name: sum(1 for g, s in zip(given, splits, strict=True) if g == label and s == name)
            for name in SPLITS
        }
        for label in labels
    }
    ratio, weights = balance([counts[label]["train"] for label in labels])
    return {
        "classes": {label: {"images": sum(c.values()), **c} for label, c in counts.items()},
        "imbalance_ratio": round(ratio, 3),
        "class_weights": (
            {labels[int(k)]: w for k, w in weights.items()} if weights is not None else None
        ),
    }
