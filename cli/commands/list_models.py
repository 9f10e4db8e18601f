"""``ktl models``: the store's models, their versions, accuracy and date."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.common import add_json, add_store, print_json


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "models",
        help="list the store's models",
        description="List the models of the store: their versions, and the default version's "
        "accuracy and date (`ktl versions NAME` details one model).",
    )
    add_store(parser)
    add_json(parser, "print a JSON list")
    return parser


def run(args: argparse.Namespace) -> int:
    rows = model_rows(args.store, args.settings.cache_dir)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"No model in the store {args.store} yet (ktl train publishes one).")
        return 0
    print(f"{'name':<20}{'versions':<14}{'default':>8}{'accuracy':>10}  created")
    for r in rows:
        versions = ",".join(map(str, r["versions"]))
        accuracy = "" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        print(
            f"{r['name']:<20}{versions:<14}{r['default_version']:>8}{accuracy:>10}  "
            f"{r['created_at'] or ''}"
        )
    return 0


def model_rows(store: str, cache: Path | None = None) -> list[dict[str, Any]]:
    """One row per model: versions, and the default version's accuracy and date
    (read from metadata.json alone: nothing is loaded)."""
    from models.metadata import BundleError
    from models.store import open_store

    model_store = open_store(store, cache)
    model_store.check_exists()
    rows = []
    for name in model_store.names():
        versions = model_store.versions(name)
        default = model_store.default(name)
        try:
            metadata = model_store.read_metadata(name, default)
            accuracy, created = metadata.metrics.accuracy, metadata.created_at
        except BundleError:
            accuracy, created = None, None
        rows.append(
            {
                "name": name,
                "versions": versions,
                "default_version": default,
                "accuracy": accuracy,
                "created_at": created,
            }
        )
    return rows
