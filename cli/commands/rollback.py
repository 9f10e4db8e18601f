"""``ktl rollback NAME``: move ``stable`` back to the version that held it before."""

from __future__ import annotations

import argparse

from cli.releases import add_common, add_force, change


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "rollback",
        help="move stable back to the version that held it before",
        description="Move the stable label of NAME back to the version that held it before "
        "the current one (repeat to go further back; versions deleted since are passed "
        "over). Without a stable label, the version below the highest becomes stable.",
    )
    add_common(parser)
    add_force(parser, "roll back even to a version with other class labels or input size")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.store import open_store
    from models.store.releases import rollback

    store = open_store(args.store, args.settings.cache_dir)
    change(store, args.name, lambda: rollback(store, args.name, force=args.force), args.json)
    return 0
