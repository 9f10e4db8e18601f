"""The test split stays DATA's own through ``--exclude`` and ``--relabel``.

The split is drawn on DATA as it is, every file with the label DATA gives it
(its folder or CSV row), and the CSVs are applied after: a CSV never moves an
image from one split to another, it only takes images out of their split
(``--exclude``) or changes their label in it (``--relabel``). What it did to each
split is counted (``report["original_test"]``), and the model is scored twice on
test (``training.evaluation.final``): on the test images it kept, with their corrected
labels, and on the *original* test images: DATA's test split as it was, every
image with DATA's label, excluded ones included. That second figure is the one
``ktl evaluate NAME DATA --split test`` reproduces (copies of training images
are left out of both test sets, as always), and the one to compare with a
version trained without the CSVs: a CSV can make the first figure look better
simply by taking hard or mislabelled test images away.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING, Any

from training.dataset.splits import SPLITS, Assignment, assign, drawn_alike

if TYPE_CHECKING:
    from training.dataset.data import Listing


def corrected(listing: Listing) -> bool:
    """Whether ``--exclude`` or ``--relabel`` changed anything in ``listing``."""
    return bool(listing.withheld or listing.original_labels)


def draw(
    listing: Listing,
    hashes: list[str | None],
    withheld_hashes: list[str | None],
    *,
    val_split: float,
    test_split: float | None,
    seed: int,
) -> tuple[Assignment, list[str | None]]:
    """The split of ``listing.samples`` and that of ``listing.withheld`` (the files
    ``--exclude`` left out), drawn together, on DATA's labels; the reviewed images
    (``--add-reviewed``) after, by their hash at the shares DATA's draw used."""
    samples, withheld = listing.samples, listing.withheld
    own = [i for i, s in enumerate(samples) if str(s.path) not in listing.reviewed]
    everything = [*(samples[i] for i in own), *withheld]
    labels = [listing.original_labels.get(str(s.path), s.label) for s in everything]
    layout = listing.fixed_splits
    if listing.layout == "train_val":
        layout = layout | {s.subset for s in withheld if s.subset}
    assignment = assign(
        labels,
        [s.subset for s in everything],
        [*(hashes[i] for i in own), *withheld_hashes],
        val_split=val_split,
        test_split=test_split,
        seed=seed,
        layout_splits=layout,
    )
    n = len(own)
    splits: list[str | None] = [None] * len(samples)
    for i, split in zip(own, assignment.splits[:n], strict=True):
        splits[i] = split
    for i in sorted(set(range(len(samples))) - set(own)):  # reviewed, by hash at DATA's shares
        if (digest := hashes[i]) is not None:
            splits[i] = drawn_alike(digest, seed, val_split, assignment.test_split)
    return dataclasses.replace(assignment, splits=splits), assignment.splits[n:]


def original_test(
    listing: Listing,
    splits: list[str | None],
    test_rows: list[int],
    withheld_splits: list[str | None],
    withheld_test: list[int],
) -> dict[str, Any]:
    """What the CSVs did to each split, and the original test images the kept test
    rows lack: ``withheld_test`` indexes ``listing.withheld`` (the excluded test
    images that are not copies of a training image)."""
    samples, was = listing.samples, listing.original_labels
    relabelled = Counter(splits[i] for i, s in enumerate(samples) if str(s.path) in was)
    excluded = Counter(withheld_splits)
    return {
        "images": len(test_rows) + len(withheld_test),
        "excluded": len(withheld_test),
        "relabelled": sum(str(samples[i].path) in was for i in test_rows),
        "excluded_by_split": {name: excluded[name] for name in SPLITS},
        "relabelled_by_split": {name: relabelled[name] for name in SPLITS},
        "excluded_files": [
            {"path": str(listing.withheld[k].path), "label": listing.withheld[k].label}
            for k in withheld_test
        ],
        "relabelled_files": [
            {
                "path": str(samples[i].path),
                "label": was[str(samples[i].path)],
                "now": samples[i].label,
            }
            for i in test_rows
            if str(samples[i].path) in was
        ],
    }


def reviewed(listing: Listing, splits: list[str | None], kept: set[int]) -> dict[str, Any] | None:
    """What the bundle records of the reviewed images (``dataset.reviewed``): how many
    were added, in which split each landed, and from which versions' predictions;
    ``kept`` are the rows in a split after copies of training images left."""
    if not listing.reviewed:
        return None
    rows = [i for i, s in enumerate(listing.samples) if str(s.path) in listing.reviewed]
    used = [i for i in rows if i in kept]
    by_version = Counter(str(listing.reviewed[str(listing.samples[i].path)]) for i in used)
    by_split = Counter(splits[i] for i in used)
    return {
        "model": listing.review_model,
        "images": len(used),
        "added": len(rows),
        "by_split": {name: by_split[name] for name in SPLITS},
        "by_version": dict(sorted(by_version.items())),
    }


def merge(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``original_test`` for the shards of several workers."""
    merged: dict[str, Any] = {
        key: sum(e[key] for e in entries) for key in ("images", "excluded", "relabelled")
    }
    for key in ("excluded_by_split", "relabelled_by_split"):
        merged[key] = {name: sum(e[key][name] for e in entries) for name in SPLITS}
    for key in ("excluded_files", "relabelled_files"):
        merged[key] = [item for e in entries for item in e[key]]
    return merged


def describe(entry: dict[str, Any]) -> str:
    """ "14 of the 67 original test images changed by the CSVs (14 excluded, 0
    relabelled); also 20 excluded in train, 25 excluded in validation"."""
    changed = entry["excluded"] + entry["relabelled"]
    line = (
        f"{changed} of the {entry['images']} original test images changed by the CSVs "
        f"({entry['excluded']} excluded, {entry['relabelled']} relabelled)"
    )
    others = [
        f"{entry[key][name]} {verb} in {'train' if name == 'train' else 'validation'}"
        for key, verb in (("excluded_by_split", "excluded"), ("relabelled_by_split", "relabelled"))
        for name in ("train", "val")
        if entry[key][name]
    ]
    return line + (f"; also {', '.join(others)}" if others else "")


def describe_reviewed(record: dict[str, Any]) -> str:
    """ "12 reviewed images of flowers (predictions of versions 1: 8, 2: 4): 9 train,
    2 validation, 1 test" (``--add-reviewed``, ``training.dataset.reviewed``)."""
    versions = ", ".join(f"{v}: {n}" for v, n in record["by_version"].items())
    split = record["by_split"]
    line = (
        f"{record['images']} reviewed images of {record['model']} (predictions of versions "
        f"{versions}): {split['train']} train, {split['val']} validation, {split['test']} test"
    )
    left = record["added"] - record["images"]
    return line + (f"; {left} left out (copies of training images, or unreadable)" if left else "")
