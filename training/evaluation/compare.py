"""``ktl compare``: which backbone's features suit DATA best, before training on it.

For every candidate whose weights are at hand (ImageNet weights already in Keras'
cache, or a file given with ``--weights NAME=FILE``), the images are decoded at
its size, its pooled features computed once, and the cross-validated linear probe
of ``training.diagnosis.probe`` (the one ``ktl doctor`` uses) scores every image with a
model that never saw it. The pick is the most accurate candidate; a tie (the same
number of images right) goes to the one with fewer parameters. The test split
training would hold out is left out, so the choice never sees it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from models.errors import ConfigError
from models.networks import lite
from models.networks.backbones import BackboneSpec, get_backbone
from models.networks.classifier import build_backbone, keras_cache_path, resolve_weights
from training.dataset.data import (
    check_classes,
    decode_all,
    list_samples,
    split_listing,
)
from training.dataset.splits import content_hashes
from training.diagnosis import probe
from training.evaluation.evaluate import wilson

Log = Callable[[str], None]


def parse_weight_files(entries: list[str]) -> dict[str, str]:
    """``NAME=FILE`` entries of ``--weights`` as a mapping."""
    files = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--weights {entry!r}: write NAME=FILE, e.g. resnet50=resnet50.h5")
        files[name] = path
    return files


def weights_at_hand(spec: BackboneSpec, file: str | None) -> tuple[str | None, str]:
    """``(weights, where)`` for a candidate: a file given, or ImageNet's in Keras'
    cache; ``(None, reason)`` when there are none to compare."""
    if file is not None:
        return resolve_weights(spec, file), f"file {file}"
    if not spec.pretrained:
        return None, f"{spec.name} has no pretrained weights: give --weights {spec.name}=FILE"
    if spec.weights_package is not None and lite.is_installed(lite.VARIANTS[spec.name]):
        return "imagenet", f"imagenet (shipped in {spec.weights_package})"
    cache = keras_cache_path(spec)
    if cache.is_file():
        return "imagenet", "imagenet (Keras' cache)"
    return None, (
        f"its ImageNet weights are not in Keras' cache ({cache}) and no "
        f"--weights {spec.name}=FILE was given"
    )


def compare_backbones(
    data: str,
    names: list[str],
    weight_files: dict[str, str],
    image_size: int | None = None,
    settings: dict[str, Any] | None = None,
    log: Log = lambda message: print(message, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """The probe's accuracy of every candidate on DATA, and the pick."""
    specs = [get_backbone(name) for name in names]  # unknown names fail before any work
    unknown = sorted(set(weight_files) - set(names))
    if unknown:
        raise ConfigError(f"--weights names {', '.join(unknown)}, not in --backbones")
    plans = {spec.name: weights_at_hand(spec, weight_files.get(spec.name)) for spec in specs}
    listing, rows, targets, labels = _images(data, settings or {})
    folds = probe.assign_folds(targets, probe.FOLDS, (settings or {}).get("seed", 42))
    decoded: dict[tuple[int, int], np.ndarray] = {}
    results, skipped = [], []
    for spec in specs:
        weights, where = plans[spec.name]
        if weights is None:
            log(f"Skipped {spec.name}: {where}")
            skipped.append({"backbone": spec.name, "reason": where})
            continue
        size = (image_size or spec.default_size,) * 2
        if size not in decoded:
            log(f"Decoding {len(rows):,} images at {size[0]}x{size[1]} ...")
            decoded[size] = _decode(listing, rows, size)
        started = time.monotonic()
        log(f"Computing {spec.name} features ({where}) and probing them ...")
        with contextlib.redirect_stdout(sys.stderr):
            backbone = build_backbone(spec, size, weights)
        features = probe.backbone_features(spec, backbone, decoded[size])
        found = probe.probe_features(features, targets, len(labels), folds)
        right = int(np.sum(found.probabilities.argmax(1) == targets))
        results.append(
            {
                "backbone": spec.name,
                "weights": where,
                "image_size": size[0],
                "accuracy": round(right / len(targets), 6),
                "right": right,
                "accuracy_interval": [round(v, 4) for v in wilson(right, len(targets))],
                "seconds": round(time.monotonic() - started, 1),
                "params": spec.params,
            }
        )
    return {
        "data": str(data),
        "images": len(targets),
        "classes": labels,
        "folds": probe.FOLDS,
        "baseline": round(float(np.bincount(targets).max() / len(targets)), 6),
        "candidates": results,
        "skipped": skipped,
        "pick": pick(results),
    }


def pick(results: list[dict[str, Any]]) -> str | None:
    """The most accurate candidate; a tie (as many images right) to the cheaper one."""
    if not results:
        return None
    return min(results, key=lambda r: (-r["right"], r["params"]))["backbone"]


def _images(data: str, settings: dict[str, Any]):
    """The images training would learn from (train and validation, never test), with
    their class index."""
    listing = list_samples(data)
    samples = listing.samples
    hashes, _ = content_hashes(samples)
    assignment = split_listing(
        listing,
        hashes,
        val_split=settings.get("val_split", 0.2),
        test_split=settings.get("test_split"),
        seed=settings.get("seed", 42),
    )
    rows = [i for i, h in enumerate(hashes) if h is not None and assignment.splits[i] != "test"]
    check_classes(Counter(samples[i].label for i in rows), "images outside the test split")
    labels = sorted({samples[i].label for i in rows})
    targets = np.array([labels.index(samples[i].label) for i in rows], np.int64)
    return listing, rows, targets, labels


def _decode(listing, rows: list[int], size: tuple[int, int]) -> np.ndarray:
    pixels = np.zeros((len(rows), *size, 3), np.uint8)
    failed = decode_all([listing.samples[i] for i in rows], list(range(len(rows))), size, pixels)
    if failed:
        names = ", ".join(f["path"] for f in failed[:3])
        raise ConfigError(f"{len(failed)} images do not decode (e.g. {names}); fix or remove them")
    return pixels
