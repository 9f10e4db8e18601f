"""Version labels of a model and their history: ``<store>/<name>/labels.json``.

Labels (``stable``, ``canary``, any ``[a-z][a-z0-9_-]*``) point at versions and
decide what is served: the default version is the one labelled ``stable``, else
the highest. They live beside the version folders, never inside one (a version
never changes after it is published). The file is replaced whole (written beside
it, fsynced, renamed), so a reader (the service, on each poll) sees the old file
or the new one, never a mix, and needs no lock; writers take ``.labels.lock``
(flock) so that two commands never lose each other's change.

The file keeps every move with its time (``history``), which is what
``ktl rollback`` walks back, and the versions deleted from the store
(``deleted``), whose numbers are never given out again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.errors import NotFound, OperationalError
from models.store.atomic import write_json_atomically

LABELS_FILE = "labels.json"
LOCK_FILE = ".labels.lock"
LABEL_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,63}")
STABLE, CANARY = "stable", "canary"
# 1: labels, canary_weight, deleted, history.
FORMAT_VERSION = 1

Action = Literal["set", "remove", "promote", "rollback", "delete"]


class LabelNotFound(NotFound):
    """No version of the model carries the label."""

    code = "label_not_found"


class InvalidLabel(LabelNotFound):
    """A label that does not match ``[a-z][a-z0-9_-]{0,63}``: no version can carry it
    (over HTTP a 404, like any label no version carries)."""


class LabelFileError(OperationalError):
    """``labels.json`` cannot be read or written; the message names the file."""

    code = "labels_unreadable"


def validate_label(label: str) -> str:
    """``label`` if it is a valid label name; checked before it is stored or routed."""
    if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label):
        raise InvalidLabel(
            f"Invalid label {str(label)[:80]!r}: use 1-64 characters, lower-case letters, "
            "digits, '-' and '_', starting with a letter (stable, canary, ...)"
        )
    return label


class _Frozen(BaseModel):
    # extra="allow": keys a newer ktl writes survive a read and a rewrite.
    model_config = ConfigDict(frozen=True, extra="allow")


class LabelMove(_Frozen):
    """One change of one label: which version it points at now (None: removed)."""

    at: str = Field(description="UTC time of the change")
    label: str
    version: int | None
    previous: int | None = None
    action: Action
    weight: float | None = None  # the canary's share of default traffic, when set
    forced: bool = False  # a check was overridden with --force
    note: str | None = None  # why, for a person: the figures of a promotion


class VersionLabels(_Frozen):
    """The content of ``labels.json``; an absent file reads as the empty one."""

    format_version: int = FORMAT_VERSION
    labels: dict[str, int] = Field(default_factory=dict)
    canary_weight: float = Field(default=0.0, ge=0, le=1)
    deleted: tuple[int, ...] = ()
    history: tuple[LabelMove, ...] = ()

    def version_of(self, label: str) -> int | None:
        return self.labels.get(label)

    def labels_of(self, version: int) -> list[str]:
        return sorted(label for label, held in self.labels.items() if held == version)

    def moved(self, move: LabelMove) -> VersionLabels:
        """These labels after ``move`` (recorded in the history)."""
        labels = {k: v for k, v in self.labels.items() if k != move.label}
        if move.version is not None:
            labels[move.label] = move.version
        weight = self.canary_weight
        if move.label == CANARY:
            weight = (move.weight or 0.0) if move.version is not None else 0.0
        return self.model_copy(
            update={
                "labels": dict(sorted(labels.items())),
                "canary_weight": weight,
                "history": (*self.history, move),
            }
        )

    def stable_holders(self) -> list[int]:
        """The versions that held ``stable``, oldest first, as a stack: a move pushes
        its version, a rollback pops back to its target. Its top is the holder now."""
        stack: list[int] = []
        for move in self.history:
            if move.label != STABLE or move.version is None:
                continue  # a removal leaves the stack for a later move to continue
            if move.action == "rollback":
                while stack and stack[-1] != move.version:
                    stack.pop()
            if not stack or stack[-1] != move.version:
                stack.append(move.version)
        return stack


def default_version(versions: Sequence[int], labels: VersionLabels) -> int | None:
    """The policy: the version labelled ``stable`` when it is in ``versions``, else the
    highest (what a model without labels has always served)."""
    stable = labels.version_of(STABLE)
    if stable is not None and stable in versions:
        return stable
    return max(versions) if versions else None


def default_candidates(
    versions: list[int], labels: VersionLabels, previous: int | None
) -> list[int]:
    """The versions to try as the default, in order. With a stable label: it, then the
    version served before (a stable that does not load keeps the last good one), then
    older versions, then newer ones (never promoted: last). Without: highest first."""
    stable = labels.version_of(STABLE)
    if stable not in versions:
        return sorted(versions, reverse=True)
    first = [stable] + ([previous] if previous in versions and previous != stable else [])
    older = [v for v in reversed(versions) if v < stable and v not in first]
    newer = [v for v in reversed(versions) if v > stable and v not in first]
    return first + older + newer


def read_labels(model_dir: Path) -> VersionLabels:
    """The labels of the model in ``model_dir`` (none when it has no ``labels.json``)."""
    path = model_dir / LABELS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return VersionLabels()
    except OSError as exc:
        raise LabelFileError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    return parse_labels(text, path)


def parse_labels(text: str, path: object) -> VersionLabels:
    """The labels in ``text``, the content of ``path`` (a file or an object's URL)."""
    try:
        labels = VersionLabels.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise LabelFileError(
            f"{path} is not a valid labels file ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0]}); restore it or remove it (the history goes with it)"
        ) from None
    if labels.format_version > FORMAT_VERSION:
        raise LabelFileError(
            f"{path} was written by a newer ktl (format {labels.format_version}; this ktl "
            f"reads up to {FORMAT_VERSION}): upgrade ktl to use it"
        )
    return labels


def update_labels(
    model_dir: Path,
    change: Callable[[VersionLabels], VersionLabels],
    then: Callable[[], None] | None = None,
) -> VersionLabels:
    """Apply ``change`` to the model's labels under its lock and write the result
    atomically, then run ``then`` still holding the lock; ``change`` raises to leave
    the file as it was."""
    with _locked(model_dir):
        before = read_labels(model_dir)
        after = change(before)
        if after != before:
            _write_atomically(model_dir / LABELS_FILE, after.model_dump(mode="json"))
        if then is not None:
            then()
        return after


@contextlib.contextmanager
def _locked(model_dir: Path) -> Iterator[None]:
    """One writer at a time per model, across processes (flock, released at exit)."""
    try:
        lock = open(model_dir / LOCK_FILE, "a")
    except OSError as exc:
        raise LabelFileError(
            f"Cannot write the labels of {model_dir}: {exc.strerror or exc}; the store must "
            "be writable to change labels"
        ) from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_atomically(path: Path, data: dict) -> None:
    try:
        write_json_atomically(path, data)
    except OSError as exc:
        raise LabelFileError(
            f"Cannot write {path}: {exc.strerror or exc}; the labels are unchanged"
        ) from exc
