"""Scoring a published version on labelled data without training (``ktl evaluate``):
the figures ``ktl train`` gives, with intervals, for any version on any dataset.

``ktl evaluate`` scores every image of DATA by default, and says how many of them
the version trained or validated on (their content hashes are in the bundle's
``seen.txt``). A split (``test``) is DATA's split as the version's own settings
draw it (the same seed and shares, from each image's content), so two versions
trained on the same or a grown dataset are compared on images neither trained on
(``ktl compare``, ``--promote-if-better``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.bundle import Bundle
from models.engines.int8 import calibration_rows
from models.errors import ConfigError
from models.preprocessing import decode_images
from training.dataset.data import DataError, Listing, list_samples, split_listing
from training.dataset.splits import SPLITS, content_fingerprint
from training.dataset.splits import content_hashes as file_hashes
from training.evaluation import calibration, decision
from training.evaluation.evaluate import evaluate

CHOICES = (*SPLITS, "all")


@dataclass
class Decoded:
    """The images of one split of DATA that a version knows, decoded at its size."""

    pixels: np.ndarray
    targets: np.ndarray
    digests: list[str]
    skipped: list[dict[str, str]]
    unknown: list[str]  # classes of DATA the version does not know


@dataclass
class Listed:
    """DATA listed and its files hashed once, for drawing several splits from it."""

    data: str
    listing: Listing
    hashes: list[str | None]
    skipped: list[dict[str, str]]


def listed(data: str | Path) -> Listed:
    listing = list_samples(data)
    hashes, skipped = file_hashes(listing.samples)
    return Listed(str(data), listing, hashes, skipped)


def decoded_split(
    bundle: Bundle,
    data: str | Path | Listed,
    split: str,
    log: Callable[[str], None] = print,
    drawn_by: Bundle | None = None,
    at_most: int | None = None,
    among: tuple[Bundle, ...] = (),
) -> Decoded:
    """DATA's ``split`` (train, val, test or all) as the settings of ``drawn_by``
    (default: the version's own) draw it, decoded; images of classes the version
    does not know are left out. ``at_most``: decode only that many, spread evenly
    over the split (calibration images, without decoding a whole training set)."""
    if split not in CHOICES:
        raise ConfigError(f"--split must be one of {', '.join(CHOICES)}; got {split!r}")
    source = data if isinstance(data, Listed) else listed(data)
    listing, hashes, skipped = source.listing, source.hashes, list(source.skipped)
    rows = rows_scored(bundle, listing, hashes, split, drawn_by, among)
    known = [i for i in rows if listing.samples[i].label in bundle.labels]
    unknown = sorted({listing.samples[i].label for i in rows} - set(bundle.labels))
    if unknown:
        log(f"Left out: classes this version does not know: {', '.join(unknown)}")
    if at_most is not None and len(known) > at_most:
        known = [known[k] for k in calibration_rows(len(known), at_most)]
    pixels, kept, digests = [], [], []
    paths = [listing.samples[i].path for i in known]
    for image in decode_images(paths, bundle.image_size, lambda s: skipped.append(s.record())):
        pixels.append(image.pixels)
        kept.append(known[image.position])
        digests.append(str(hashes[known[image.position]]))
    if not kept:
        raise DataError(f"{source.data}: no image of this version's classes in its {split} split")
    targets = np.array([bundle.labels.index(listing.samples[i].label) for i in kept])
    return Decoded(np.stack(pixels), targets, digests, skipped, unknown)


def score_version(
    bundle: Bundle,
    data: str | Path,
    split: str = "all",
    log: Callable[[str], None] = print,
    drawn_by: Bundle | None = None,
    among: tuple[Bundle, ...] = (),
) -> dict[str, Any]:
    """The version's figures on DATA's ``split`` (train, val, test or all), the split
    drawn with the settings of ``drawn_by`` (default: the version's own), so that two
    versions can be scored on the same images; with ``among``, only on the images
    every version of it held out in that split (``shared_rows``)."""
    if bundle.metadata.task == "multilabel":
        from training.multilabel.scoring import score_multilabel  # it imports this module

        return score_multilabel(bundle, data, split, log)
    decoded = decoded_split(bundle, data, split, log, drawn_by, among=among)
    seen = seen_by(bundle, decoded.digests)
    if seen:
        log(seen_warning(bundle, seen, len(decoded.digests)))
    probabilities = bundle.classifier.predict(decoded.pixels)
    targets = decoded.targets
    threshold = bundle.metadata.decision.threshold if bundle.metadata.decision else 0.0
    return {
        "name": bundle.name,
        "version": bundle.version,
        "data": str(data),
        "split": split,
        "figures": evaluate(probabilities, targets, bundle.labels).model_dump(
            mode="json", exclude_unset=True
        ),
        "calibration": calibration.figures(probabilities, targets).model_dump(),
        "decision": {
            "threshold": threshold,
            **asdict(decision.selective(probabilities, targets, threshold)),
        },
        "fingerprint": content_fingerprint(decoded.digests),
        "skipped": decoded.skipped,
        "unknown_classes": decoded.unknown,
        "images": len(decoded.digests),
        "seen": seen,  # of them, trained or validated on; None: the version does not say
    }


def seen_by(bundle: Bundle, digests: list[str]) -> int | None:
    """How many of these images ``bundle`` trained or validated on (None: unknown)."""
    known = bundle.seen()
    return None if known is None else sum(digest in known for digest in digests)


def seen_warning(bundle: Bundle, seen: int, images: int) -> str:
    return (
        f"Warning: {seen} of the {images} images scored are images {bundle.name} version "
        f"{bundle.version} trained or validated on, so these figures are optimistic; score "
        "it on images it has not seen (or pass --split test for the test split of the data "
        "it was trained on)"
    )


def rows_scored(
    bundle: Bundle,
    listing: Listing,
    hashes: list[str | None],
    split: str,
    drawn_by: Bundle | None = None,
    among: tuple[Bundle, ...] = (),
) -> list[int]:
    """The rows of DATA's ``split`` that are scored. The version's own test split is
    scored as it was tested: less the copies of training images it left out of it, so
    ``--split test`` agrees with the published test figures."""
    if split == "test" and drawn_by is None and not among:
        among = (bundle,)
    rows = _rows(drawn_by or bundle, listing, hashes, split)
    return shared_rows(among, listing, hashes, split, rows) if among else rows


def shared_rows(
    among: tuple[Bundle, ...],
    listing: Listing,
    hashes: list[str | None],
    split: str,
    rows: list[int],
) -> list[int]:
    """Of ``rows``, the images that every version of ``among`` had in ``split`` as its
    own settings draw it, less those any of them left out of it as a copy of one of
    its training images (its ``dataset.removed_*``): what each was tested on."""
    keep = set(rows)
    for other in among:
        keep &= set(_rows(other, listing, hashes, split))
        dataset = other.metadata.dataset
        copies = {*dataset.get("removed_from_val", []), *dataset.get("removed_near_copies", [])}
        keep = {i for i in keep if str(listing.samples[i].path) not in copies}
    return sorted(keep)


def _rows(bundle: Bundle, listing, hashes: list[str | None], split: str) -> list[int]:
    """The images of ``split``, drawn with the version's own settings."""
    if split == "all":
        return [i for i, digest in enumerate(hashes) if digest is not None]
    training, dataset = bundle.metadata.training, bundle.metadata.dataset
    test_share = dataset.get("test_split", 0.0)
    if split == "test" and not test_share and "test" not in listing.fixed_splits:
        raise ConfigError(
            f"{bundle.name} version {bundle.version} was trained without a test split, so "
            "DATA has none under its settings: pass --split all (or val) to score it"
        )
    assignment = split_listing(
        listing,
        hashes,
        val_split=training.get("val_split", 0.2),
        test_split=test_share,
        seed=training.get("seed", 42),
    )
    return [i for i, s in enumerate(assignment.splits) if s == split]
