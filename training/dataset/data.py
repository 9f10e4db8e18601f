"""Dataset ingestion: find the labelled images, decode each once, check the
dataset's health and split it without leaking duplicates into validation."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.errors import UserError
from models.near_duplicates import (
    close_pairs,
    copies_across,
    group_pairs,
    look_at_files,
)
from models.preprocessing import IMAGE_SUFFIXES, SkippedImage, decode_images, is_image_name
from training.dataset import held_out
from training.dataset.health import health_report
from training.dataset.splits import SPLITS, Assignment, assign, content_hashes


class DataError(UserError, ValueError):
    """A dataset that cannot be trained on; the message says what to fix."""

    code = "invalid_dataset"


@dataclass
class Sample:
    path: Path
    label: str
    subset: str | None = None  # "train", "val" or "test" when the layout fixes it


@dataclass
class Listing:
    layout: str  # "folders", "train_val" (train/ with val/ and/or test/) or "csv"
    samples: list[Sample]
    ignored: list[str] = field(default_factory=list)  # files that are not images
    corrections: dict = field(default_factory=dict)  # --exclude/--relabel applied (corrections)
    refused: list[dict] = field(default_factory=list)  # not read (confine): path and reason
    # --exclude/--relabel (training.dataset.held_out): the files left out, with DATA's labels,
    # and DATA's label of each relabelled file (by path), to draw the split as DATA has it
    withheld: list[Sample] = field(default_factory=list)
    original_labels: dict[str, str] = field(default_factory=dict)
    # --add-reviewed (training.dataset.reviewed): the version of each reviewed image, by path
    reviewed: dict[str, int | None] = field(default_factory=dict)
    review_model: str | None = None

    @property
    def fixed_splits(self) -> frozenset[str]:
        """The splits the layout fixes for every image (its folders)."""
        if self.layout != "train_val":
            return frozenset()
        return frozenset(s.subset for s in self.samples if s.subset)


@dataclass
class Prepared:
    """Decoded pixels and the split, everything the recipe needs."""

    labels: list[str]
    pixels: np.ndarray  # (n, h, w, 3) uint8, possibly a memory map; test rows not decoded
    targets: np.ndarray  # (n,) int32 label index
    train: np.ndarray  # indices into pixels
    val: np.ndarray
    report: dict
    test: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # not decoded

    def class_weights(self) -> dict[int, float] | None:
        weights = self.report.get("class_weights")
        return {int(k): float(v) for k, v in weights.items()} if weights else None


def list_samples(data: str | Path, *, confine: bool = False) -> Listing:
    """The labelled image files of DATA: class folders, train/ + val/, or a CSV. With
    ``confine``, a file whose real path leaves DATA is left out, in ``refused``."""
    listing = _list(Path(data))
    return _confined(listing, Path(data)) if confine else listing


def _list(path: Path) -> Listing:
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(
                f"{path}: DATA must be a folder of class folders, a folder with train/ and "
                "val/, or a CSV file with columns path,label"
            )
        return _list_csv(path)
    present = [s for s in SPLITS if (path / s).is_dir()]
    if "train" in present and len(present) > 1:  # train/ with val/, test/ or both
        parts = [_list_class_folders(path / split, split) for split in present]
        listing = Listing(
            "train_val",
            [sample for part in parts for sample in part.samples],
            [file for part in parts for file in part.ignored],
        )
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


def _confined(listing: Listing, data: Path) -> Listing:
    """``listing`` less the files whose real path is not inside ``data`` (a link out of
    it, or a file in a linked folder): they are never opened, and each is refused with
    the reason. A service job on the server's own folders reads nothing else."""
    base = (data.parent if data.is_file() else data).resolve()
    kept, refused = [], []
    for sample in listing.samples:
        if inside(sample.path, base):
            kept.append(sample)
        else:
            reason = f"{sample.path}: its real path leaves the dataset folder (a link); not read"
            refused.append({"path": str(sample.path), "reason": reason})
    return dataclasses.replace(listing, samples=kept, refused=refused)


def inside(path: Path, base: Path) -> bool:
    try:
        return path.resolve().is_relative_to(base)
    except (OSError, RuntimeError):  # a loop of links: RuntimeError before Python 3.13
        return False


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
                split = (row.get("split") or "").strip().lower() or None
                if not file or not label:
                    raise DataError(f"{path}, line {line}: empty path or label")
                if split is not None and split not in SPLITS:
                    raise DataError(
                        f"{path}, line {line}: split {split!r} is not one of train, val, test "
                        "(or empty: drawn by the image's hash)"
                    )
                image = (path.parent / file).resolve()
                if not image.is_file():
                    raise DataError(f"{path}, line {line}: {file} does not exist")
                samples.append(Sample(image, label, split))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the CSV: {exc}") from exc
    return Listing("csv", samples)


def listing_fingerprint(listing: Listing, image_size: tuple[int, int]) -> str:
    """Identifies a listing (paths, labels, sizes, mtimes) at an image size: whether the
    decoded-image cache still holds it (see ``training.dataset.splits.content_fingerprint`` for
    a set of images by content)."""
    digest = hashlib.sha256(repr(image_size).encode())
    for sample in listing.samples:
        stat = sample.path.stat()
        record = (
            f"{sample.path}\0{sample.label}\0{sample.subset}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
        )
        digest.update(record.encode())
    return digest.hexdigest()


def split_listing(
    listing: Listing,
    hashes: list[str | None],
    *,
    val_split: float,
    test_split: float | None,
    seed: int,
) -> Assignment:
    """Every file of ``listing`` in its split (``training.dataset.splits.assign``), from its
    label, the split its layout gives it, and its content hash."""
    samples = listing.samples
    return assign(
        [s.label for s in samples],
        [s.subset for s in samples],
        hashes,
        val_split=val_split,
        test_split=test_split,
        seed=seed,
        layout_splits=listing.fixed_splits,
    )


def decode_all(
    samples: list[Sample],
    indices: list[int],
    image_size: tuple[int, int],
    out: np.ndarray,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Decode the samples at ``indices`` into ``out[i]``; returns the files that could
    not be decoded, with the reason."""

    skipped: list[dict] = []
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, len(indices))

    def skip(image: SkippedImage) -> None:
        skipped.append({**image.record(), "index": indices[image.position]})
        tick()

    paths = [samples[index].path for index in indices]
    threads = max(1, os.cpu_count() or 1)
    for image in decode_images(paths, image_size, skip, threads=threads):
        out[indices[image.position]] = image.pixels
        tick()
    return skipped


def prepare(
    listing: Listing,
    image_size: tuple[int, int],
    *,
    val_split: float,
    seed: int,
    test_split: float | None = 0.0,
    pixels_file: Path | None = None,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> Prepared:
    """Split a listing by content (``training.dataset.splits``), decode its training and
    validation images, check its health (``DataError`` if it cannot be trained on).
    The test images are not decoded: nothing reads them before the final evaluation.
    ``test_split`` None holds out a test split when the classes are big enough."""
    samples, n = listing.samples, len(listing.samples)
    hashes, unreadable = content_hashes(samples)
    skipped = listing.refused + unreadable
    check_classes(Counter(s.label for s, h in zip(samples, hashes, strict=True) if h), "images")
    aside_hashes = content_hashes(listing.withheld)[0]  # --exclude: split as DATA has them
    assignment, aside = held_out.draw(
        listing, hashes, aside_hashes, val_split=val_split, test_split=test_split, seed=seed
    )
    splits = assignment.splits
    pixels = _pixel_cache(pixels_file, (len(samples), *image_size, 3))
    learn = [i for i, split in enumerate(splits) if split in ("train", "val")]
    size = f"{image_size[0]}x{image_size[1]}"
    log(f"Decoding {len(learn):,} training and validation images at {size} ...")
    undecodable = decode_all(samples, learn, image_size, pixels, _progress(log))
    for item in undecodable:
        splits[item.pop("index")] = None
    skipped += undecodable
    for item in skipped:
        log(f"  skipped {item['reason']}")
    tested = [k for k, split in enumerate(aside) if split == "test"]  # excluded test images
    near = near_copies(
        samples + [listing.withheld[k] for k in tested],
        splits + ["test"] * len(tested),
        hashes + [aside_hashes[k] for k in tested],
        log,
    )
    prepared = _split(listing, hashes, assignment, pixels, skipped, log, [i for i in near if i < n])
    kept = {int(i) for part in (prepared.train, prepared.val, prepared.test) for i in part}
    if (reviewed := held_out.reviewed(listing, splits, kept)) is not None:  # --add-reviewed
        prepared.report["reviewed"] = reviewed
    if held_out.corrected(listing):  # excluded test images less copies of training images
        trained = {hashes[i] for i in prepared.train}
        tested = [
            k for j, k in enumerate(tested) if n + j not in near and aside_hashes[k] not in trained
        ]
        prepared.report["original_test"] = held_out.original_test(
            listing, splits, prepared.test.tolist(), aside, tested
        )
    return prepared


def near_copies(
    samples: list[Sample], splits: list[str | None], hashes: list[str | None], log
) -> list[int]:
    """The validation and test images that are near-copies of a training image
    (resized, re-encoded, slightly cropped: ``models.near_duplicates``)."""
    log("Looking for near-copies of training images in validation and test ...")
    placed = [i for i, split in enumerate(splits) if split]
    looks: list = [None] * len(samples)
    for i, look in zip(placed, look_at_files([samples[i].path for i in placed])[0], strict=True):
        looks[i] = look
    groups = group_pairs(len(samples), close_pairs(looks, exact=hashes))
    return copies_across(groups, splits)


def _pixel_cache(pixels_file: Path | None, shape: tuple[int, ...]) -> np.ndarray:
    """The decoded-image cache: a memory map on disk, or an array. Rows never written
    (the test images) take no room in either."""
    if pixels_file is not None:
        return np.lib.format.open_memmap(pixels_file, mode="w+", dtype=np.uint8, shape=shape)
    return np.zeros(shape, np.uint8)


def _progress(log: Callable[[str], None]) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        step = max(1, total // 10)
        if done == total or (total >= 100 and done % step == 0):
            log(f"  decoded {done:,}/{total:,}")

    return progress


def _split(listing, hashes, assignment, pixels, skipped, log, near=()) -> Prepared:
    samples, splits = listing.samples, assignment.splits
    good = [i for i, split in enumerate(splits) if split is not None]
    labels = _check_classes(listing, [i for i in good if splits[i] != "test"])
    index_of = {label: i for i, label in enumerate(labels)}
    targets = np.array([index_of.get(s.label, -1) for s in samples], np.int32)
    parts = {name: [i for i in good if splits[i] == name] for name in SPLITS}
    train_hashes = {hashes[i] for i in parts["train"]}
    leaked = [i for i in parts["val"] + parts["test"] if hashes[i] in train_hashes]
    near = sorted(set(near) - set(leaked))  # near-copies that are not identical files
    for name in ("val", "test"):
        parts[name] = [i for i in parts[name] if hashes[i] not in train_hashes and i not in near]
    if not parts["val"]:
        raise DataError("no validation images are left after removing copies of training images")
    report = health_report(listing, labels, hashes, good, parts, leaked, skipped, near)
    report.update(test_split=assignment.test_split, test_note=assignment.note)
    # The bundle records what the version learnt from (``ktl evaluate`` warns on them).
    report["seen"] = sorted({str(hashes[i]) for i in parts["train"] + parts["val"]})
    if assignment.note:
        report["warnings"].append(assignment.note)
    for line in report["warnings"]:
        log(f"  note: {line}")
    train, val, test = (np.array(parts[name], np.int64) for name in SPLITS)
    return Prepared(labels, pixels, targets, train, val, report, test)


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
