"""Which split each image belongs to: train, val (early stopping, calibration, the
decision threshold) or test (the final figures, read by nothing before them).

An image's split comes from a seeded hash of its content, not from its place in a
shuffled list: adding images to a dataset never moves the old ones, so a version
trained on the bigger dataset is still measured on images no version trained on,
and copies of an image always land together. Per class the shares are right on
average; a tiny class is given at least one image in train and val (and test, when
there is a test split), which is the one case where a new image may move an old one.
Layouts fix splits where they say so: ``train/ val/ test/`` folders, or a CSV
``split`` column; what they leave open (val out of train/, test out of val/) is
drawn by hash in the same way. The content hashes themselves are read here too
(``content_hashes``: sha256 of each file's bytes, in parallel).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.dataset.data import Sample

SPLITS = ("train", "val", "test")
DEFAULT_TEST_SPLIT = 0.15
# With --test-split auto, a test split is held out only when every class has this
# many distinct images: 15 % of 40 is 6 test images of each class.
MIN_IMAGES_FOR_TEST = 40


@dataclass(frozen=True)
class Assignment:
    """Each image's split (None: unreadable, in no split) and the test share used."""

    splits: list[str | None]
    test_split: float
    note: str | None  # why there is no test split, when there is none


def position(digest: str, seed: int, stream: str = "") -> float:
    """Where a content hash falls in [0, 1), for a seed (and an independent stream)."""
    mixed = hashlib.sha256(f"{seed}:{stream}:{digest}".encode()).digest()
    return int.from_bytes(mixed[:8], "big") / 2**64


def held_out_share(
    requested: float | None, distinct_per_class: dict[str, int]
) -> tuple[float, str | None]:
    """The test split to use: ``requested`` (a fraction; 0 = none), or with None (auto)
    the default when every class has enough distinct images, else none and why."""
    if requested is not None:
        return requested, None if requested else (
            "no test split (--test-split 0): the figures come from validation, which also "
            "chose the epoch kept, so they are optimistic"
        )
    smallest = min(distinct_per_class.values(), default=0)
    if smallest >= MIN_IMAGES_FOR_TEST:
        return DEFAULT_TEST_SPLIT, None
    few = min(distinct_per_class, key=lambda label: distinct_per_class[label])
    return 0.0, (
        f"too few images for a test split ({few!r} has {smallest}; a test split needs "
        f"{MIN_IMAGES_FOR_TEST} per class): the figures come from validation only, which "
        "also chose the epoch kept, so they are optimistic"
    )


def assign(
    labels: Sequence[str],
    fixed: Sequence[str | None],
    hashes: Sequence[str | None],
    *,
    val_split: float,
    test_split: float | None,
    seed: int,
    layout_splits: frozenset[str],
) -> Assignment:
    """Split every image: ``fixed`` is what the layout says of each (None: nothing),
    ``layout_splits`` the splits the layout fixes for all its images."""
    distinct: dict[str, set[str]] = defaultdict(set)
    for label, digest in zip(labels, hashes, strict=True):
        if digest is not None:
            distinct[label].add(digest)
    test, note = held_out_share(test_split, {k: len(v) for k, v in distinct.items()})
    if "test" in layout_splits:
        test, note = 0.0, None  # the layout's own test/ is the test split
    splits = [
        None if digest is None else _one(subset, digest, seed, val_split, test, layout_splits)
        for subset, digest in zip(fixed, hashes, strict=True)
    ]
    _at_least_one_each(splits, labels, hashes, fixed, seed, test > 0)
    return Assignment(splits, test, note)


def _one(
    subset: str | None, digest: str, seed: int, val: float, test: float, layout: frozenset[str]
) -> str:
    if subset == "test":
        return "test"
    if subset == "val":
        # test out of val/ when the layout has no test/: the share val and test would have
        if test and position(digest, seed, "test") < test / (test + val):
            return "test"
        return "val"
    u = position(digest, seed)
    if subset == "train":  # val out of train/ only when the layout has no val/
        return "val" if "val" not in layout and u < val else "train"
    return "test" if u < test else "val" if u < test + val else "train"


def drawn_alike(digest: str, seed: int, val: float, test: float) -> str:
    """The split of an image added to a drawn dataset (``--add-reviewed``): where its
    hash falls at the shares the dataset's draw used, as one of its own open images."""
    return _one(None, digest, seed, val, test, frozenset())


def _at_least_one_each(
    splits: list[str | None],
    labels: Sequence[str],
    hashes: Sequence[str | None],
    fixed: Sequence[str | None],
    seed: int,
    with_test: bool,
) -> None:
    """Give every class one group of identical images in each split it lacks, taken
    from its training images (those the layout left open), nearest the boundary."""
    wanted = ("val", "test") if with_test else ("val",)
    for label in sorted(set(labels)):
        members = [i for i, x in enumerate(labels) if x == label and splits[i] is not None]
        for split in wanted:
            if any(splits[i] == split for i in members):
                continue
            movable = [i for i in members if splits[i] == "train" and fixed[i] is None]
            groups = {hashes[i] for i in movable}
            if len(groups) < 2:  # one training group must stay (checked after splitting)
                continue
            chosen = min(groups, key=lambda digest: position(str(digest), seed))
            for i in movable:
                if hashes[i] == chosen:
                    splits[i] = split


def content_fingerprint(hashes: Sequence[str]) -> str:
    """Identifies a set of images by content, whatever their names or order (a split's
    ``fingerprint`` in bundle metadata)."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def content_hashes(
    samples: list[Sample], progress: Callable[[int, int], None] | None = None
) -> tuple[list[str | None], list[dict]]:
    """sha256 of every file's bytes (read, not decoded: its split depends on it);
    None, and the reason, for files that cannot be read."""

    def digest(index: int) -> tuple[int, str | None, str | None]:
        try:
            return index, hashlib.sha256(samples[index].path.read_bytes()).hexdigest(), None
        except OSError as exc:
            return index, None, f"{samples[index].path}: cannot read the file ({exc.strerror})"

    hashes: list[str | None] = [None] * len(samples)
    unreadable: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for done, (index, value, error) in enumerate(pool.map(digest, range(len(samples))), 1):
            hashes[index] = value
            if error:
                unreadable.append({"path": str(samples[index].path), "reason": error})
            if progress:
                progress(done, len(samples))
    return hashes, unreadable
