"""A multi-label dataset: the CSV ``path,labels`` (``;`` between labels, an empty
cell for none), the task it asks for, and the content-hash split that keeps every
label in train, validation and test where it can."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.decision import SEPARATOR
from training.dataset.data import DataError, inside
from training.dataset.splits import SPLITS, held_out_share, position


@dataclass
class MultiSample:
    path: Path
    labels: tuple[str, ...]
    subset: str | None = None  # a CSV split column's value


@dataclass
class MultiListing:
    samples: list[MultiSample]
    labels: list[str]  # every label named, sorted
    refused: list[dict] = field(default_factory=list)  # not read (confine): path and reason

    def targets(self) -> np.ndarray:
        """``(n, labels)`` 0/1 float32: which of ``labels`` each image has."""
        index = {label: k for k, label in enumerate(self.labels)}
        out = np.zeros((len(self.samples), len(self.labels)), np.float32)
        for row, sample in enumerate(self.samples):
            out[row, [index[label] for label in sample.labels if label in index]] = 1
        return out


def _rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(enumerate(reader, start=2))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the CSV: {exc}") from exc


def split_labels(cell: str | None) -> tuple[str, ...]:
    """A ``labels`` cell's labels: ``;``-separated, blanks dropped, each once."""
    parts = (part.strip() for part in (cell or "").split(SEPARATOR))
    return tuple(dict.fromkeys(part for part in parts if part))


def detect_task(data: str | Path, requested: str) -> str:
    """``single_label`` or ``multilabel``: what ``--task`` says, or with auto,
    multilabel when DATA is a CSV whose ``labels`` column gives a row several
    labels or none."""
    path = Path(data)
    is_labels_csv = path.is_file() and path.suffix.lower() == ".csv"
    if requested == "multilabel":
        if not is_labels_csv or "labels" not in _rows(path)[0]:
            raise DataError(
                f"{path}: --task multilabel needs a CSV with columns path,labels (labels "
                f"separated by '{SEPARATOR}', an empty cell for none)"
            )
        return "multilabel"
    if requested == "single_label" or not is_labels_csv:
        return "single_label"
    fields, rows = _rows(path)
    if "labels" not in fields or "label" in fields:
        return "single_label"
    if any(len(split_labels(row.get("labels"))) != 1 for _, row in rows):
        return "multilabel"
    raise DataError(
        f"{path}: every row of its labels column has one label: for one class per image "
        "name the column label (path,label), or give --task multilabel to train sigmoid "
        "outputs on it anyway"
    )


def list_multilabel(data: str | Path, *, confine: bool = False) -> MultiListing:
    """The images of a CSV ``path,labels`` (with an optional ``split`` column). With
    ``confine`` (service jobs), a file whose real path leaves the CSV's folder is
    never read: it is left out, in ``refused``, with the reason."""
    path = Path(data)
    base, refused = path.parent.resolve(), []
    fields, rows = _rows(path)
    if "path" not in fields or "labels" not in fields:
        raise DataError(f"{path}: a multi-label CSV needs a header row with columns path,labels")
    samples = []
    for line, row in rows:
        file = (row.get("path") or "").strip()
        split = (row.get("split") or "").strip().lower() or None
        if not file:
            raise DataError(f"{path}, line {line}: empty path")
        if split is not None and split not in SPLITS:
            raise DataError(f"{path}, line {line}: split {split!r} is not one of train, val, test")
        image = (path.parent / file).resolve()
        if not image.is_file():
            raise DataError(f"{path}, line {line}: {file} does not exist")
        if confine and not inside(image, base):
            reason = f"{file}: its real path leaves the dataset folder (a link); not read"
            refused.append({"path": file, "reason": reason})
            continue
        samples.append(MultiSample(image, split_labels(row.get("labels")), split))
    labels = sorted({label for sample in samples for label in sample.labels})
    if len(labels) < 2:
        raise DataError(f"{path}: a multi-label dataset needs at least 2 labels; found {labels}")
    return MultiListing(samples, labels, refused)


@dataclass
class MultiSplit:
    """Each image's split (None: unreadable), the test share, and notes on labels
    the split could not place in every split."""

    splits: list[str | None]
    test_split: float
    notes: list[str] = field(default_factory=list)


def split_multilabel(
    listing: MultiListing,
    hashes: list[str | None],
    *,
    val_split: float,
    test_split: float | None,
    seed: int,
) -> MultiSplit:
    """The content-hash split (``training.dataset.splits.position``): an image's place comes
    from its bytes (or the CSV's split column); then each label missing from
    validation (or test) takes one training image that has it, nearest the boundary,
    when it has two or more."""
    distinct: dict[str, set[str]] = {label: set() for label in listing.labels}
    for sample, digest in zip(listing.samples, hashes, strict=True):
        for label in sample.labels:
            if digest is not None:
                distinct[label].add(digest)
    test, note = held_out_share(test_split, {k: len(v) for k, v in distinct.items()})
    splits = [
        _one(sample.subset, digest, seed, val_split, test)
        for sample, digest in zip(listing.samples, hashes, strict=True)
    ]
    notes = [note] if note else []
    for label in listing.labels:
        for split in ("val", "test") if test > 0 else ("val",):
            if not _give(listing, hashes, splits, label, split, seed):
                notes.append(
                    f"label {label!r} has no image in {split} (too few images to spare one): its "
                    "figures there are missing"
                )
    return MultiSplit(splits, test, notes)


def drawn_parts(
    listing: MultiListing,
    hashes: list[str | None],
    *,
    val_split: float,
    test_split: float | None,
    seed: int,
) -> tuple[dict[str, list[int]], MultiSplit]:
    """Each split's rows, validation and test less copies of a training image (by
    content): what a job trains, validates and tests on, and ``ktl evaluate`` redraws."""
    drawn = split_multilabel(listing, hashes, val_split=val_split, test_split=test_split, seed=seed)
    parts = {name: [i for i, s in enumerate(drawn.splits) if s == name] for name in SPLITS}
    trained = {hashes[i] for i in parts["train"]}
    for name in ("val", "test"):
        parts[name] = [i for i in parts[name] if hashes[i] not in trained]
    return parts, drawn


def _one(subset: str | None, digest: str | None, seed: int, val: float, test: float) -> str | None:
    if digest is None or subset is not None:
        return None if digest is None else subset
    u = position(digest, seed)
    return "test" if u < test else "val" if u < test + val else "train"


def _give(
    listing: MultiListing,
    hashes: list[str | None],
    splits: list[str | None],
    label: str,
    split: str,
    seed: int,
) -> bool:
    """Make sure ``split`` has an image with ``label``: move there the group of
    identical images nearest the boundary from a split holding two groups or more of
    it (train first, then the other held-out split). False when none can be spared."""
    members = [i for i, s in enumerate(listing.samples) if label in s.labels and splits[i]]
    if any(splits[i] == split for i in members):
        return True
    for donor in ("train", "test" if split == "val" else "val"):
        movable = [i for i in members if splits[i] == donor and listing.samples[i].subset is None]
        if len({hashes[i] for i in movable}) >= 2:
            digest = min({str(hashes[i]) for i in movable}, key=lambda d: position(d, seed))
            for i in movable:
                if hashes[i] == digest:
                    splits[i] = split
            return True
    return False
