"""``ktl evaluate`` of a multi-label version: its figures on a CSV ``path,labels``,
each label at the version's own threshold, on DATA's split as the version's settings
draw it (or all of DATA)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from models.bundle import Bundle
from models.errors import ConfigError
from training.dataset.data import DataError
from training.dataset.splits import SPLITS, content_fingerprint, content_hashes
from training.evaluation.scoring import seen_by, seen_warning
from training.multilabel.data import drawn_parts, list_multilabel
from training.multilabel.figures import multilabel_figures
from training.multilabel.job import decode_rows


def score_multilabel(
    bundle: Bundle, data: str | Path, split: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """The version's figures on DATA's ``split`` (train, val, test or all)."""
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, all; got {split!r}")
    assert bundle.metadata.multilabel is not None
    listing = list_multilabel(data)
    unknown = sorted(set(listing.labels) - set(bundle.labels))
    if unknown:
        log(f"Left out: labels this version does not know: {', '.join(unknown)}")
    listing.labels = list(bundle.labels)
    hashes, skipped = content_hashes(cast(Any, listing.samples))
    if split == "all":
        rows = [i for i, digest in enumerate(hashes) if digest is not None]
    else:
        training, dataset = bundle.metadata.training, bundle.metadata.dataset
        rows = drawn_parts(
            listing,
            hashes,
            val_split=training.get("val_split", 0.2),
            test_split=dataset.get("test_split", 0.0),
            seed=training.get("seed", 42),
        )[0][split]
    pixels, targets, files = decode_rows(listing, rows, bundle.image_size, log)
    if not files:
        raise DataError(f"{data}: no image in its {split} split")
    by_path = {str(listing.samples[i].path): str(hashes[i]) for i in rows}
    digests = [by_path[file] for file in files]
    seen = seen_by(bundle, digests)
    if seen:
        log(seen_warning(bundle, seen, len(digests)))
    probabilities = bundle.classifier.predict(pixels)
    thresholds = np.array(bundle.metadata.multilabel.thresholds(bundle.labels))
    return {
        "name": bundle.name,
        "version": bundle.version,
        "data": str(data),
        "split": split,
        "task": "multilabel",
        "figures": multilabel_figures(probabilities, targets, list(bundle.labels), thresholds),
        "thresholds": dict(zip(bundle.labels, thresholds.tolist(), strict=True)),
        "fingerprint": content_fingerprint(digests),
        "skipped": skipped,
        "unknown_labels": unknown,
        "images": len(files),
        "seen": seen,
    }
