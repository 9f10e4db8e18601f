"""What an operator does to the versions of a model: label them (``ktl label``,
``ktl train --promote``), roll ``stable`` back, delete a version, keep the newest N.

Each change is one locked, atomic rewrite of the model's ``labels.json``
(``models.store.labels``); a running service reads it on its next poll. Moves that
would silently change what positional outputs mean (another label list, another
input size) are refused unless forced.
"""

from __future__ import annotations

from models.errors import UserError
from models.metadata import BundleError, BundleMetadata
from models.store import ModelStore
from models.store.labels import (
    CANARY,
    STABLE,
    Action,
    LabelMove,
    VersionLabels,
    default_version,
    validate_label,
)
from models.timestamps import utc_now


class IncompatibleVersion(UserError):
    """Two versions whose outputs mean different things (labels, input size)."""

    code = "incompatible_version"


class ProtectedVersion(UserError):
    """A labelled or default version, deleted without --force."""

    code = "protected_version"


class NoRollbackTarget(UserError):
    code = "no_rollback_target"


def set_label(
    store: ModelStore,
    name: str,
    label: str,
    version: int,
    *,
    weight: float | None = None,
    force: bool = False,
    action: Action = "set",
    note: str | None = None,
) -> VersionLabels:
    """Point ``label`` at ``version``; for the canary, ``weight`` is its share of the
    default traffic. Moving ``stable`` onto the canary's version ends the canary."""
    validate_label(label)
    _check_weight(label, weight)
    store.resolve(name, version)  # ModelNotFound naming the versions there are

    def change(labels: VersionLabels) -> VersionLabels:
        versions = store.versions(name)
        serving = default_version(versions, labels)
        if label == CANARY and version == serving:
            raise UserError(
                f"Version {version} of {name!r} is already its default version; a canary "
                "is another version that takes a share of the default traffic"
            )
        compared = serving if label in (STABLE, CANARY) else labels.version_of(label)
        forced = _check_compatible(store, name, compared, version, f"{label} label", force)
        move = LabelMove(
            at=utc_now(),
            label=label,
            version=version,
            previous=labels.version_of(label),
            action=action,
            weight=weight if label == CANARY else None,
            forced=forced,
            note=note,
        )
        labels = labels.moved(move)
        if label == STABLE and labels.version_of(CANARY) == version:
            labels = labels.moved(_removal(labels, CANARY, action, "promoted to stable"))
        return labels

    return store.update_labels(name, change)


def remove_label(store: ModelStore, name: str, label: str) -> VersionLabels:
    """Take ``label`` off its version (removing the canary ends its traffic)."""
    validate_label(label)
    store.resolve(name)  # the model exists

    def change(labels: VersionLabels) -> VersionLabels:
        if labels.version_of(label) is None:
            held = ", ".join(f"{k}={v}" for k, v in labels.labels.items()) or "none"
            raise UserError(f"{name!r} has no label {label!r} to remove (its labels: {held})")
        return labels.moved(_removal(labels, label, "remove"))

    return store.update_labels(name, change)


def rollback(store: ModelStore, name: str, *, force: bool = False) -> VersionLabels:
    """Move ``stable`` back to the version that held it before the current one (still
    in the store); without a stable label, to the version below the highest."""
    store.resolve(name)

    def change(labels: VersionLabels) -> VersionLabels:
        versions = store.versions(name)
        current = default_version(versions, labels)
        target = _rollback_target(labels, versions, current)
        if target is None:
            raise NoRollbackTarget(
                f"{name!r} has no earlier version to roll back to (stable: {current}, held "
                f"before by: {labels.stable_holders()[:-1] or 'none'}, versions: {versions}); "
                f"choose one with: ktl label {name} stable VERSION"
            )
        forced = _check_compatible(store, name, current, target, "rollback", force)
        move = LabelMove(
            at=utc_now(),
            label=STABLE,
            version=target,
            previous=labels.version_of(STABLE),
            action="rollback",
            forced=forced,
        )
        return labels.moved(move)

    return store.update_labels(name, change)


def _rollback_target(labels: VersionLabels, versions: list[int], current: int | None) -> int | None:
    if labels.version_of(STABLE) is None:  # the highest serves: go to the one before it
        below = [v for v in versions if current is not None and v < current]
        return below[-1] if below else None
    earlier = [v for v in labels.stable_holders() if v != current and v in versions]
    return earlier[-1] if earlier else None


def protected(store: ModelStore, name: str, labels: VersionLabels) -> dict[int, str]:
    """Versions that must stay, with why: labelled, the default, or a rollback target."""
    versions = store.versions(name)
    why = {v: "an earlier stable version (a rollback target)" for v in labels.stable_holders()}
    default = default_version(versions, labels)
    if default is not None:
        why[default] = "the default version"
    for label, version in labels.labels.items():
        why[version] = f"labelled {label}"
    return {v: reason for v, reason in why.items() if v in versions}


def delete_version(
    store: ModelStore, name: str, version: int, *, force: bool = False
) -> VersionLabels:
    """Remove ``version`` from the store in one step. A labelled or default version
    needs ``force``, and its labels go with it. The number is never reused."""
    store.resolve(name, version)

    def change(labels: VersionLabels) -> VersionLabels:
        versions = store.versions(name)
        held = labels.labels_of(version)
        serving = default_version(versions, labels) == version
        if (held or serving) and not force:
            reasons = [f"labelled {label}" for label in held]
            what = ", ".join([*reasons, "the default version"] if serving else reasons)
            raise ProtectedVersion(
                f"Version {version} of {name!r} is {what}: move its labels first (ktl label, "
                f"ktl rollback), or pass --force to delete it with its labels"
            )
        for label in held:
            labels = labels.moved(_removal(labels, label, "delete", forced=True))
        return labels.model_copy(update={"deleted": tuple(sorted({*labels.deleted, version}))})

    # The deletion is recorded before the folder goes, under the lock: a publish that
    # no longer sees the folder sees the record, and never hands the number out again.
    return store.update_labels(name, change, then=lambda: store.remove_version(name, version))


def retain(store: ModelStore, name: str, keep: int) -> list[int]:
    """Delete all but the newest ``keep`` versions, except labelled ones, the default,
    rollback targets and the parents (warm start, quantized) of those kept. Returns
    the versions deleted."""
    versions = store.versions(name)
    labels = store.labels(name)
    kept = set(versions[-keep:]) | set(protected(store, name, labels))
    kept |= _ancestors(store, name, kept)
    deleted = []
    for version in versions:
        if version not in kept:
            delete_version(store, name, version)
            deleted.append(version)
    return deleted


def _ancestors(store: ModelStore, name: str, versions: set[int]) -> set[int]:
    """Every version of ``name`` that ``versions`` descend from (``lineage`` in their
    metadata: the parent's ``name`` and ``version``)."""
    found: set[int] = set()
    todo = list(versions)
    while todo:
        metadata = _metadata(store, name, todo.pop())
        lineage = metadata.lineage if metadata else None
        if lineage is None or lineage.name != name:
            continue
        parent = lineage.version
        if parent not in found | versions:
            found.add(parent)
            todo.append(parent)
    return found


def _check_compatible(
    store: ModelStore, name: str, current: int | None, target: int, what: str, force: bool
) -> bool:
    """Whether a check was overridden: ``IncompatibleVersion`` when ``target`` answers
    with other labels or takes another input size than ``current``, unless ``force``."""
    if current is None or current == target:
        return False
    old, new = _metadata(store, name, current), _metadata(store, name, target)
    if old is None or new is None:
        return False  # an unreadable version never loads; nothing it answers can change
    differences = _differences(old, new)
    if not differences:
        return False
    if force:
        return True
    raise IncompatibleVersion(
        f"Refusing the {what}: version {target} of {name!r} does not answer like version "
        f"{current} ({'; '.join(differences)}), so clients that read outputs by position "
        "(:predict rows, tensors) would get other answers without notice. Pass --force when "
        "they are ready for it."
    )


def _differences(old: BundleMetadata, new: BundleMetadata) -> list[str]:
    found = []
    if old.labels != new.labels:
        found.append(f"class labels {list(new.labels)} instead of {list(old.labels)}")
    if old.image_size != new.image_size:
        found.append(f"image size {list(new.image_size)} instead of {list(old.image_size)}")
    return found


def _metadata(store: ModelStore, name: str, version: int) -> BundleMetadata | None:
    try:
        return store.read_metadata(name, version)
    except BundleError:
        return None


def _removal(
    labels: VersionLabels,
    label: str,
    action: Action,
    note: str | None = None,
    *,
    forced: bool = False,
) -> LabelMove:
    return LabelMove(
        at=utc_now(),
        label=label,
        version=None,
        previous=labels.version_of(label),
        action=action,
        forced=forced,
        note=note,
    )


def _check_weight(label: str, weight: float | None) -> None:
    if weight is None:
        return
    if label != CANARY:
        raise UserError(f"--weight is the canary's share of traffic; {label!r} takes none")
    if not 0 <= weight <= 1:
        raise UserError(f"--weight {weight}: a share of the default traffic, from 0 to 1")
