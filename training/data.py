"""Dataset ingestion: find the labelled images, decode each once, check the
dataset's health and split it without leaking duplicates into validation."""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.errors import UserError
from models.preprocessing import IMAGE_SUFFIXES, ImageError, is_image_name, load_image

IMBALANCE_RATIO = 1.5  # largest / smallest class above this: class weights are used
STRONG_IMBALANCE_RATIO = 3.0  # ... and above this it is reported as strong


class DataError(UserError, ValueError):
    """A dataset that cannot be trained on; the message says what to fix."""

    code = "invalid_dataset"


@dataclass
class Sample:
    path: Path
    label: str
    subset: str | None = None  # "train" / "val" when the layout fixes it


@dataclass
class Listing:
    layout: str  # "folders", "train_val" or "csv"
    samples: list[Sample]
    ignored: list[str] = field(default_factory=list)  # files that are not images


@dataclass
class Prepared:
    """Decoded pixels and the split, everything the recipe needs."""

    labels: list[str]
    pixels: np.ndarray  # (n, h, w, 3) uint8, possibly a memory map
    targets: np.ndarray  # (n,) int32 label index
    train: np.ndarray  # indices into pixels
    val: np.ndarray
    report: dict

    def class_weights(self) -> dict[int, float] | None:
        weights = self.report.get("class_weights")
        return {int(k): float(v) for k, v in weights.items()} if weights else None


def list_samples(data: str | Path) -> Listing:
    """The labelled image files of DATA: class folders, train/ + val/, or a CSV."""
    path = Path(data)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(
                f"{path}: DATA must be a folder of class folders, a folder with train/ and "
                "val/, or a CSV file with columns path,label"
            )
        return _list_csv(path)
    if (path / "train").is_dir() and (path / "val").is_dir():
        train = _list_class_folders(path / "train", "train")
        val = _list_class_folders(path / "val", "val")
        listing = Listing("train_val", train.samples + val.samples, train.ignored + val.ignored)
    else:
        listing = _list_class_folders(path, None)
        listing.layout = "folders"
    if not listing.samples:
        loose = [p for p in path.iterdir() if p.is_file() and is_image_name(p)]
        if loose:
            raise DataError(
                f"{path}: its {len(loose)} images lie directly in the folder, with no class to "
                f"learn; put them in one sub-folder per class, e.g. {path}/cats/*.jpg and "
                f"{path}/dogs/*.jpg, and give the folder above them"
            )
        raise DataError(
            f"{path}: no images found. Expected one sub-folder per class holding images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}), or train/ and val/ folders laid out so"
        )
    return listing


def _list_class_folders(root: Path, subset: str | None) -> Listing:
    samples: list[Sample] = []
    ignored: list[str] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                file = Path(dirpath) / filename
                if is_image_name(file):
                    samples.append(Sample(file, class_dir.name, subset))
                else:
                    ignored.append(str(file))
    ignored += [str(p) for p in sorted(root.iterdir()) if p.is_file()]
    return Listing("folders", samples, ignored)


def _list_csv(path: Path) -> Listing:
    samples: list[Sample] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise DataError(f"{path}: the CSV needs a header row with columns path,label")
            for line, row in enumerate(reader, start=2):
                file, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
                if not file or not label:
                    raise DataError(f"{path}, line {line}: empty path or label")
                image = (path.parent / file).resolve()
                if not image.is_file():
                    raise DataError(f"{path}, line {line}: {file} does not exist")
                samples.append(Sample(image, label))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the CSV: {exc}") from exc
    return Listing("csv", samples)


def fingerprint(listing: Listing, image_size: tuple[int, int]) -> str:
    """Identifies a listing (paths, labels, sizes, mtimes) at an image size."""
    digest = hashlib.sha256(repr(image_size).encode())
    for sample in listing.samples:
        stat = sample.path.stat()
        record = (
            f"{sample.path}\0{sample.label}\0{sample.subset}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
        )
        digest.update(record.encode())
    return digest.hexdigest()


def decode_all(
    samples: list[Sample],
    image_size: tuple[int, int],
    out: np.ndarray,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[str | None], list[dict]]:
    """Decode every sample into ``out[i]``; returns content hashes (None where a file
    failed) and the skipped files with the reason."""

    def decode(index: int) -> tuple[int, str | None, str | None]:
        try:
            data = samples[index].path.read_bytes()
            out[index] = load_image(data, image_size, name=str(samples[index].path))
            return index, hashlib.sha256(data).hexdigest(), None
        except (ImageError, OSError) as exc:
            return index, None, str(exc)

    hashes: list[str | None] = [None] * len(samples)
    skipped: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for done, (index, digest, error) in enumerate(pool.map(decode, range(len(samples))), 1):
            hashes[index] = digest
            if error:
                skipped.append({"path": str(samples[index].path), "reason": error})
            if progress:
                progress(done, len(samples))
    return hashes, skipped


def prepare(
    listing: Listing,
    image_size: tuple[int, int],
    *,
    val_split: float,
    seed: int,
    pixels_file: Path | None = None,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> Prepared:
    """Decode, health-check and split a listing (``DataError`` if it cannot be trained on)."""
    samples = listing.samples
    shape = (len(samples), *image_size, 3)
    pixels: np.ndarray = (
        np.lib.format.open_memmap(pixels_file, mode="w+", dtype=np.uint8, shape=shape)
        if pixels_file is not None
        else np.empty(shape, np.uint8)
    )
    log(f"Decoding {len(samples):,} images at {image_size[0]}x{image_size[1]} ...")
    step = max(1, len(samples) // 10)

    def progress(done: int, total: int) -> None:
        if done == total or (total >= 100 and done % step == 0):
            log(f"  decoded {done:,}/{total:,}")

    hashes, skipped = decode_all(samples, image_size, pixels, progress)
    for item in skipped:
        log(f"  skipped {item['reason']}")
    good = [i for i, digest in enumerate(hashes) if digest is not None]
    labels = _check_classes(listing, good)
    index_of = {label: i for i, label in enumerate(labels)}
    targets = np.array([index_of.get(s.label, -1) for s in samples], np.int32)

    if listing.layout == "train_val":
        train = [i for i in good if samples[i].subset == "train"]
        val = [i for i in good if samples[i].subset == "val"]
    else:
        train, val = _stratified_split(good, samples, hashes, val_split, seed)
    train_hashes = {hashes[i] for i in train}
    leaked = [i for i in val if hashes[i] in train_hashes]
    val = [i for i in val if hashes[i] not in train_hashes]
    if not val:
        raise DataError("no validation images are left after removing copies of training images")

    report = _health_report(listing, samples, labels, hashes, good, train, val, leaked, skipped)
    for line in report["warnings"]:
        log(f"  note: {line}")
    return Prepared(labels, pixels, targets, np.array(train), np.array(val), report)


def check_classes(counts: Counter, what: str) -> None:
    """``DataError`` unless there are 2 classes or more, each with 2 ``what`` or more:
    checked on the listing before anything is decoded, and again after."""
    if len(counts) < 2:
        found = f"only class {next(iter(counts))!r}" if counts else f"no {what}"
        raise DataError(f"need at least 2 classes to train a classifier; found {found}")
    small = sorted(label for label, n in counts.items() if n < 2)
    if small:
        raise DataError(f"every class needs at least 2 {what}; too few in: {', '.join(small)}")


def _check_classes(listing: Listing, good: list[int]) -> list[str]:
    samples = listing.samples
    counts = Counter(samples[i].label for i in good)
    check_classes(counts, "readable images")
    if listing.layout == "train_val":
        train_labels = {samples[i].label for i in good if samples[i].subset == "train"}
        val_only = sorted({samples[i].label for i in good} - train_labels)
        if val_only:
            raise DataError(f"classes with images in val/ but none in train/: {val_only}")
    return sorted(counts)


def _stratified_split(
    good: list[int], samples: list[Sample], hashes: list[str | None], val_split: float, seed: int
) -> tuple[list[int], list[int]]:
    """Per class, whole groups of identical files go to one side, so copies never
    straddle the split; at least one group per class on each side."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, dict[str | None, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i in good:
        by_class[samples[i].label][hashes[i]].append(i)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(by_class):
        groups = list(by_class[label].values())
        if len(groups) < 2:
            raise DataError(
                f"class {label!r} has only one distinct image (the others are copies of it); "
                "it cannot be split into training and validation"
            )
        order = rng.permutation(len(groups))
        n_val = min(len(groups) - 1, max(1, round(len(groups) * val_split)))
        for rank, g in enumerate(order):
            (val if rank < n_val else train).extend(groups[g])
    return sorted(train), sorted(val)


def _health_report(listing, samples, labels, hashes, good, train, val, leaked, skipped) -> dict:
    groups: dict[str, list[int]] = defaultdict(list)
    for i in good:
        groups[hashes[i]].append(i)
    train_counts = Counter(samples[i].label for i in train)
    val_counts = Counter(samples[i].label for i in val)
    return finish_report(
        {
            "layout": listing.layout,
            "classes": {
                label: {"train": train_counts[label], "val": val_counts[label]} for label in labels
            },
            "train_images": len(train),
            "val_images": len(val),
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
            "content_hash": hashlib.sha256(
                "".join(sorted(f"{hashes[i]}:{samples[i].label}" for i in good)).encode()
            ).hexdigest(),
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
    labels = list(report["classes"])
    train_counts = [report["classes"][label]["train"] for label in labels]
    ratio = max(train_counts) / min(train_counts)
    class_weights = None
    if ratio > IMBALANCE_RATIO:
        total = sum(train_counts)
        class_weights = {
            str(k): round(total / (len(labels) * count), 6) for k, count in enumerate(train_counts)
        }
        strength = "strong " if ratio > STRONG_IMBALANCE_RATIO else ""
        warnings.append(
            f"{strength}class imbalance (largest/smallest = {ratio:.1f}); training uses class "
            "weights"
        )
    if report["skipped"]:
        warnings.append(f"{len(report['skipped'])} files could not be decoded and were skipped")
    warnings += split_size_warnings(report)
    return {
        **report,
        "imbalance_ratio": round(ratio, 3),
        "class_weights": class_weights,
        "warnings": warnings,
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
                label: {
                    side: sum(r["classes"][label][side] for r in reports)
                    for side in ("train", "val")
                }
                for label in first["classes"]
            },
            "train_images": sum(r["train_images"] for r in reports),
            "val_images": sum(r["val_images"] for r in reports),
            "skipped": [item for r in reports for item in r["skipped"]],
            "ignored_files": first["ignored_files"],
            "duplicates": [item for r in reports for item in r["duplicates"]],
            "removed_from_val": [item for r in reports for item in r["removed_from_val"]],
            "content_hash": hashlib.sha256(
                "".join(r["content_hash"] for r in reports).encode()
            ).hexdigest(),
            "shards": len(reports),
        }
    )
