"""What goes live after a job publishes (``ktl train --promote``,
``--promote-if-better``, ``--keep``): the ``stable`` label moves through
``models.store.releases``, like ``ktl label`` moves it, and a running service follows on
its next poll.

``--promote-if-better`` scores the new version and the version served until now on
the same images with ``ktl evaluate``'s machinery: those of the job's DATA that
both held out as test images (as each one's settings draw DATA's test split, with
DATA's labels, less what either left out as a copy of its training images; their
validation images when one has no test split), and promotes only a strictly
higher accuracy. Otherwise ``stable`` stays, or is pinned, on the version served
until now, so a worse model never becomes the default, even for a model that had
no label yet (where the newest version would otherwise be the default).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from models.bundle import load_bundle
from models.errors import ConfigError, UserError
from models.store import ModelStore, open_store
from models.store.labels import STABLE, default_version
from models.store.releases import IncompatibleVersion, retain, set_label
from training.config import TrainConfig
from training.dataset.data import DataError
from training.evaluation.scoring import score_version
from training.jobs.state import Log


class Comparison(BaseModel):
    """``--promote-if-better``: the new version and the stable one on the same images."""

    model_config = ConfigDict(frozen=True)

    split: str
    images: int
    fingerprint: str
    accuracy: float
    stable_version: int
    stable_accuracy: float
    difference: float


class Release(BaseModel):
    """What the release options did; ``ktl train --json`` shows it as ``release``, with
    ``reason`` when a promotion was decided and ``deleted`` with ``--keep``."""

    model_config = ConfigDict(frozen=True)

    promoted: bool
    comparison: Comparison | None
    reason: str | None = None
    deleted: list[int] | None = None
    default_version: int | None
    stable: int | None


def release(config: TrainConfig, version: int, log: Log) -> Release | None:
    """Apply the job's release options to the version it published; what happened, or
    None when it asked for nothing."""
    if not (config.promote or config.promote_if_better or config.keep):
        return None
    store = open_store(config.store)
    name = config.name
    before = default_version([v for v in store.versions(name) if v != version], store.labels(name))
    promoted, comparison, reason = False, None, None
    if config.promote or (config.promote_if_better and before is None):
        reason = (
            "promoted to stable (--promote)"
            if config.promote
            else ("promoted to stable: the first version, nothing to compare with")
        )
        promoted = _label(store, name, version, version, "--promote")
    elif config.promote_if_better:
        assert before is not None
        promoted, comparison, reason = _promote_if_better(config, store, version, before, log)
    kept: dict[str, list[int]] = {}
    if config.keep:
        kept["deleted"] = deleted = retain(store, name, config.keep)
        if deleted:
            log(f"Deleted versions {deleted} of {name} (--keep {config.keep})")
    if reason is not None:
        log(f"{name} version {version}: {reason}")
    return Release.model_validate(
        {
            "promoted": promoted,
            "comparison": comparison,
            **({"reason": reason} if reason is not None else {}),
            **kept,
            "default_version": store.default(name),
            "stable": store.labels(name).version_of(STABLE),
        }
    )


def _promote_if_better(
    config: TrainConfig, store: ModelStore, version: int, current: int, log: Log
) -> tuple[bool, Comparison | None, str]:
    """Whether the new version became stable, the comparison it took, and why."""
    new = load_bundle(store.resolve(config.name, version)[1])
    old = load_bundle(store.resolve(config.name, current)[1])
    if old.labels != new.labels or old.image_size != new.image_size:
        _label(store, config.name, current, version, "kept: the new version answers otherwise")
        why = (
            f"not promoted: version {current} (stable) has other classes or another "
            f"input size, so accuracy is not comparable; promote it with ktl label "
            f"{config.name} stable {version} --force when clients are ready"
        )
        return False, None, why
    split = "test"
    try:
        scores = [score_version(b, config.data, split, log, among=(new, old)) for b in (new, old)]
    except (ConfigError, DataError):  # no test split, or none shared: on validation
        split = "val"
        scores = [score_version(b, config.data, split, log, among=(new, old)) for b in (new, old)]
    ours, theirs = (s["figures"]["accuracy"] for s in scores)
    comparison = Comparison(
        split=split,
        images=scores[0]["figures"]["images"],
        fingerprint=scores[0]["fingerprint"],
        accuracy=ours,
        stable_version=current,
        stable_accuracy=theirs,
        difference=round(ours - theirs, 6),
    )
    figures = (
        f"{'test' if split == 'test' else 'validation'} accuracy {ours:.3f} against "
        f"{theirs:.3f} for version {current} on the same {comparison.images} images "
        f"({(ours - theirs) * 100:+.1f} points)"
    )
    better = ours > theirs
    promoted = _label(store, config.name, version if better else current, version, figures)
    reason = (
        "promoted to stable: " if better else f"not promoted, version {current} stays stable: "
    ) + figures
    return promoted and better, comparison, reason


def _label(store: ModelStore, name: str, target: int, new: int, note: str) -> bool:
    """Point stable at ``target`` (``promote`` in the history) unless it is there."""
    if store.labels(name).version_of(STABLE) == target:
        return target == new
    try:
        # Pinning stable on the version served until now changes no answer: forced.
        set_label(store, name, STABLE, target, action="promote", note=note, force=target != new)
    except IncompatibleVersion as exc:
        raise UserError(f"Published {name} version {new}, but did not promote it: {exc}") from exc
    return target == new
