"""Starting from a published version (``--weights model:NAME[:VERSION|:LABEL]``): the new
model takes the version's backbone, and its head too when the classes are the
same, then trains the usual phases. The new bundle records its parent (lineage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras

from models.bundle import Bundle, load_bundle, sha256_file
from models.errors import ConfigError
from models.store import ModelStore, validate_name
from models.store.labels import LABEL_PATTERN

PREFIX = "model:"


def is_warm_start(weights: str | None) -> bool:
    return bool(weights) and str(weights).startswith(PREFIX)


def parse(weights: str) -> tuple[str, int | str | None]:
    """``model:NAME`` (its default version), ``model:NAME:VERSION`` or
    ``model:NAME:LABEL`` (the version a label such as stable points at)."""
    name, _, version = weights.removeprefix(PREFIX).partition(":")
    if not version:
        return validate_name(name), None
    if version.isdigit():
        return validate_name(name), int(version)
    if not LABEL_PATTERN.fullmatch(version):
        raise ConfigError(
            f"--weights {weights!r}: write model:NAME, model:NAME:VERSION (a version is 1, "
            "2 ...) or model:NAME:LABEL (a label such as stable)"
        )
    return validate_name(name), version


@dataclass(frozen=True)
class Parent:
    bundle: Bundle
    lineage: dict[str, Any]


def load_parent(weights: str, store: ModelStore, backbone: str) -> Parent:
    """The version to start from, checked against the job's backbone."""
    name, version = parse(weights)
    if isinstance(version, str):
        label, version = version, store.labels(name).version_of(version)
        if version is None:
            raise ConfigError(f"--weights {weights}: {name} has no version labelled {label}")
    _, path = store.resolve(name, version)
    bundle = load_bundle(path)
    if bundle.metadata.backbone != backbone:
        raise ConfigError(
            f"--weights {weights}: {name} version {bundle.version} is a "
            f"{bundle.metadata.backbone}; pass --backbone {bundle.metadata.backbone}"
        )
    lineage = {
        "kind": "warm_start",
        "name": name,
        "version": bundle.version,
        "model_sha256": sha256_file(path / "model.keras"),
    }
    return Parent(bundle, lineage)


def take_weights(
    parent: Parent, model: keras.Model, backbone: keras.Model, labels: list[str]
) -> str:
    """Copy the parent's backbone into ``backbone``, and its head into ``model`` when
    the labels are the same, in the same order; says which it did."""
    backbone.set_weights(parent.bundle.model.get_layer(backbone.name).get_weights())
    if labels == parent.bundle.labels:
        head = parent.bundle.model.get_layer("predictions")
        model.get_layer("predictions").set_weights(head.get_weights())
        return "backbone and head (same classes): training continues the whole model"
    return "backbone (other classes): a new head trains on it"
