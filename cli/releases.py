"""What the release commands (``label``, ``rollback``, ``delete``, ``versions``)
share: a model's labels after a change, in words or as JSON."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cli.common import add_json, add_store, print_json

if TYPE_CHECKING:
    from models.store import ModelStore
    from models.store.labels import LabelMove, VersionLabels

RELOAD_NOTE = "a running service follows within its reload interval (KTL_RELOAD_INTERVAL)"


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="model name")
    add_store(parser)
    add_json(parser, "print the model's labels after the change as one JSON object")


def add_force(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--force", action="store_true", help=what)


def state(store: ModelStore, name: str, labels: VersionLabels) -> dict[str, Any]:
    """The labels of ``name`` as ``--json`` prints them (the default version is None
    once the last version is deleted)."""
    from models.store.labels import default_version

    versions = store.versions(name)
    return {
        "name": name,
        "default_version": default_version(versions, labels),
        "policy": "stable" if labels.version_of("stable") in versions else "latest",
        "version_labels": labels.labels,
        "canary_weight": labels.canary_weight,
    }


def describe(move: LabelMove) -> str:
    """ "stable: version 3 (was 2)", "canary: removed (was 4)"."""
    now = "removed" if move.version is None else f"version {move.version}"
    was = f" (was {move.previous})" if move.previous is not None else ""
    share = f", {move.weight:.0%} of the default traffic" if move.weight else ""
    forced = " [forced]" if move.forced else ""
    return f"{move.label}: {now}{was}{share}{forced}"


def change(
    store: ModelStore, name: str, apply: Callable[[], VersionLabels], as_json: bool
) -> VersionLabels:
    """Run ``apply`` (a change of ``models.store.releases``), then print the label moves it
    made and the default version after them."""
    before = len(store.labels(name).history)
    labels = apply()
    moves = list(labels.history[before:])
    result = state(store, name, labels)
    if as_json:
        print_json({**result, "moves": [move.model_dump() for move in moves]})
        return labels
    for move in moves:
        print(f"{name} {describe(move)}")
    print(f"{name} serves version {result['default_version']} by default; {RELOAD_NOTE}")
    return labels
