"""``ktl versions NAME``: every version of a model with its date, labels, test
accuracy and which one is served by default."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import add_json, add_store, print_json
from cli.releases import describe, state


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "versions",
        help="a model's versions, labels and default",
        description="List the versions of NAME: created, labels, accuracy on the version's "
        "own test split, and which one is served by default (stable, else the highest).",
    )
    parser.add_argument("name", metavar="NAME", help="model name")
    parser.add_argument("--history", action="store_true", help="also list every label move")
    add_store(parser)
    add_json(parser, "print one JSON object, the label history included")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.store import open_store

    store = open_store(args.store, args.settings.cache_dir)
    store.resolve(args.name)  # ModelNotFound naming what the store holds
    labels = store.labels(args.name)
    rows = version_rows(store, args.name)
    result = state(store, args.name, labels)
    if args.json:
        history = [move.model_dump() for move in labels.history]
        print_json({**result, "versions": rows, "history": history})
        return 0
    print(f"{'version':>7}  {'created':<20}  {'labels':<24}  {'test accuracy':>13}  default")
    for row in rows:
        names = ", ".join(row["labels"])
        if "canary" in row["labels"] and labels.canary_weight:
            names = names.replace("canary", f"canary {labels.canary_weight:.0%}")
        accuracy = "-" if row["test_accuracy"] is None else f"{row['test_accuracy']:.3f}"
        print(
            f"{row['version']:>7}  {row['created_at'] or '-':<20}  {names or '-':<24}  "
            f"{accuracy:>13}  {'yes' if row['default'] else ''}"
        )
    if args.history:
        for move in labels.history:
            print(f"  {move.at}  {move.action:<8}  {describe(move)}{_note(move.note)}")
    return 0


def version_rows(store, name: str) -> list[dict[str, Any]]:
    """One row per version, newest first (from metadata.json alone: nothing is loaded)."""
    from models.metadata import BundleError

    labels, default = store.labels(name), store.default(name)
    rows = []
    for version in reversed(store.versions(name)):
        try:
            metadata = store.read_metadata(name, version)
        except BundleError:
            metadata = None
        test = metadata.evaluation.test if metadata and metadata.evaluation else None
        rows.append(
            {
                "version": version,
                "created_at": metadata.created_at if metadata else None,
                "labels": labels.labels_of(version),
                "test_accuracy": test.accuracy if test else None,
                "default": version == default,
            }
        )
    return rows


def _note(text: str | None) -> str:
    return f"  ({text})" if text else ""
