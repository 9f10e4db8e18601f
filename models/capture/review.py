"""Review: the captured predictions of a model ranked for a person to label, and the
labels they give, kept beside the captures (``reviewed/<id>.json``).

The queue puts the predictions the version abstained on first, then the rest from
the least confident up (its top probability; the calibrated one the service
answered with). Near-duplicates (``models.near_duplicates``, the doctor's finder)
form one item, shown by its most uncertain member, so a person labels each look
once: a label given to an item is recorded for every member of its group.

A label must be one of the labels the version that made the prediction had (the
keys of the captured record's ``probabilities``). ``ktl review`` and the service's
``/review`` page both go through here; ``ktl train --add-reviewed`` reads the
labels back (``reviewed_images``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.capture.folder import CaptureFolder
from models.errors import NotFound, UserError
from models.ids import is_id
from models.near_duplicates import Look, close_pairs, group_pairs, look_at_files
from models.timestamps import utc_now

# Each captured image's look and content hash, computed once per process: a capture
# never changes (written once, atomically, under a name of its own). The review page
# reads the queue on every label, so only new captures are decoded.
_LOOKS: dict[Path, tuple[Look | None, str | None]] = {}
MAX_REMEMBERED = 50_000


class NotCaptured(NotFound):
    code = "prediction_not_captured"


class NotALabel(UserError):
    code = "unknown_label"


@dataclass(frozen=True)
class Captured:
    """One captured prediction: its record (as the service wrote it) and its image."""

    record: dict[str, Any]
    image: Path

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def abstained(self) -> bool:
        return self.record.get("label") is None

    @property
    def confidence(self) -> float:
        return float(self.record.get("confidence", 0.0))

    @property
    def labels(self) -> list[str]:
        return list(self.record.get("probabilities") or {})


@dataclass(frozen=True)
class Item:
    """One look to label: ``shown`` (its most uncertain member), every member
    (``shown`` first) and the labels already given to them, by id."""

    shown: Captured
    sources: tuple[Captured, ...]
    reviewed: dict[str, str]

    @property
    def members(self) -> tuple[str, ...]:
        """Every member's id, the shown one first."""
        return tuple(source.id for source in self.sources)

    @property
    def done(self) -> bool:
        return set(self.members) <= set(self.reviewed)

    def to_json(self) -> dict[str, Any]:
        record = self.shown.record
        return {
            "id": self.shown.id,
            "time": record.get("time"),
            "version": record.get("version"),
            "predicted": record.get("top"),
            "decision": record.get("label"),
            "abstained": self.shown.abstained,
            "confidence": self.shown.confidence,
            "probabilities": record.get("probabilities"),
            "labels": self.shown.labels,
            "image": str(self.shown.image),
            "near_duplicates": list(self.members[1:]),
            "reviewed": self.reviewed.get(self.shown.id),
        }


def captured(folder: CaptureFolder, model: str) -> list[Captured]:
    """Every whole capture of ``model``: a record whose image is there."""
    directory = folder.model_dir(model) / "images"
    paths = sorted(directory.glob("*.json")) if directory.is_dir() else []
    return [found for path in paths if (found := _read_capture(path)) is not None]


def find_capture(folder: CaptureFolder, model: str, identifier: str) -> Captured | None:
    """The whole capture ``identifier`` of ``model``, or None (read alone)."""
    if not is_id(identifier):
        return None
    return _read_capture(folder.model_dir(model) / "images" / f"{identifier}.json")


def _read_capture(path: Path) -> Captured | None:
    """The capture whose record is ``path``; None for a temporary left by a killed
    writer, a record that does not read, or one whose image is gone."""
    if not is_id(path.stem):
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    image = path.parent / str(record.get("image", ""))
    return Captured(record, image) if record.get("image") and image.is_file() else None


def reviews(folder: CaptureFolder, model: str) -> dict[str, dict[str, Any]]:
    """The labels given so far, by prediction id."""
    directory = folder.model_dir(model) / "reviewed"
    given = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        if is_id(path.stem):
            try:
                given[path.stem] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
    return given


def rank(items: Sequence[Captured]) -> list[Captured]:
    """Abstained first, then the least confident; the oldest first among equals."""
    return sorted(items, key=lambda c: (not c.abstained, c.confidence, c.id))


def queue(folder: CaptureFolder, model: str, *, include_done: bool = False) -> list[Item]:
    """The captures of ``model`` as items to label, in the order to label them; those
    whose every member has a label only with ``include_done``."""
    ranked = rank(captured(folder, model))
    remembered = dict(_LOOKS)  # a copy: another thread may clear the original meanwhile
    known = {c.image: remembered[c.image] for c in ranked if c.image in remembered}
    fresh = [c.image for c in ranked if c.image not in known]
    for path, look in zip(fresh, look_at_files(fresh)[0], strict=True):
        known[path] = (look, _digest(path))  # exact copies group even without structure
    if len(_LOOKS) > MAX_REMEMBERED:
        _LOOKS.clear()  # (pruned captures' entries); the next call reads them again
    _LOOKS.update(known)
    looks = [known[c.image][0] for c in ranked]
    digests = [known[c.image][1] for c in ranked]
    groups = group_pairs(len(ranked), close_pairs(looks, exact=digests))
    group_of = {i: group for group in groups for i in group}
    given = {i: r["label"] for i, r in reviews(folder, model).items()}
    items, seen = [], set()
    for position, shown in enumerate(ranked):
        if position in seen:
            continue
        members = group_of.get(position, [position])  # sorted: the first is the shown one
        seen.update(members)
        sources = tuple(ranked[m] for m in members)
        item = Item(shown, sources, {c.id: given[c.id] for c in sources if c.id in given})
        if include_done or not item.done:
            items.append(item)
    return items


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def record_review(
    folder: CaptureFolder, model: str, identifier: str, label: str, *, by: str
) -> list[str]:
    """Record ``label`` for the capture ``identifier`` and for its near-duplicates (its
    item's members); the ids labelled. ``by`` says who: ``cli`` or ``page``."""
    return record_reviews(folder, model, [(identifier, label)], by=by)[0]


def record_reviews(
    folder: CaptureFolder, model: str, given: Sequence[tuple[str, str]], *, by: str
) -> list[list[str]]:
    """``record_review`` of each ``(id, label)``, the queue read once; every one is
    checked before any is written, so a bad one leaves nothing behind."""
    return _record(folder, model, given, by)[0]


def record_and_count(
    folder: CaptureFolder, model: str, identifier: str, label: str, *, by: str
) -> tuple[list[str], int]:
    """``record_review``, and the items still without a label afterwards (from the
    same reading of the queue)."""
    labelled, items = _record(folder, model, [(identifier, label)], by)
    now = set(labelled[0])
    left = sum(1 for item in items if not set(item.members) <= set(item.reviewed) | now)
    return labelled[0], left


def _record(
    folder: CaptureFolder, model: str, given: Sequence[tuple[str, str]], by: str
) -> tuple[list[list[str]], list[Item]]:
    """The ids labelled for each of ``given``, and the queue as it was read."""
    items = queue(folder, model, include_done=True)
    item_of = {member: item for item in items for member in item.members}
    chosen = []
    for identifier, label in given:
        item = item_of.get(identifier)
        if item is None:
            raise NotCaptured(
                f"No captured prediction {identifier!r} of model {model!r} (never captured, "
                "pruned by the disk budget, or of another model)"
            )
        if label not in item.shown.labels:
            raise NotALabel(
                f"{label!r} is not one of the labels of version "
                f"{item.shown.record.get('version')} of {model!r}: {item.shown.labels}"
            )
        chosen.append((item, label))
    for item, label in chosen:
        for source in item.sources:
            _write(folder, model, source.record, label, by)
    return [list(item.members) for item, _ in chosen], items


def _write(folder: CaptureFolder, model: str, source: dict[str, Any], label: str, by: str) -> None:
    folder.write_review(
        model,
        {
            "id": source["id"],
            "label": label,
            "predicted": source.get("top"),
            "version": source.get("version"),
            "image": source.get("image"),
            "by": by,
            "time": utc_now(),
        },
    )


@dataclass(frozen=True)
class ReviewedImage:
    """A reviewed capture, as training takes it: the image, its label, the version
    whose prediction it was."""

    path: Path
    label: str
    version: int | None


def reviewed_images(folder: CaptureFolder, model: str) -> list[ReviewedImage]:
    """Every reviewed capture of ``model`` whose image is still there, oldest first."""
    images = folder.model_dir(model) / "images"
    found = []
    for _, review in sorted(reviews(folder, model).items()):
        path = images / str(review.get("image", ""))
        if review.get("image") and path.is_file():
            version = review.get("version")
            found.append(ReviewedImage(path, str(review["label"]), version))
    return found
