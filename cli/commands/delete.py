"""``ktl delete NAME --version V``: take a version out of the store."""

from __future__ import annotations

import argparse

from cli.releases import add_common, add_force, change


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "delete",
        help="delete a version from the store",
        description="Delete version V of NAME from the store, in one step: a running service "
        "drops it on its next poll (requests already answering on it finish). A labelled or "
        "default version needs --force (its labels go with it). Its number is never reused.",
    )
    add_common(parser)
    parser.add_argument("--version", type=int, required=True, metavar="V", help="the version")
    add_force(parser, "delete even a labelled or default version, with its labels")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.store import open_store
    from models.store.releases import delete_version

    store = open_store(args.store, args.settings.cache_dir)

    def delete():
        labels = delete_version(store, args.name, args.version, force=args.force)
        if not args.json:
            print(f"Deleted {args.name} version {args.version} from {store.root}")
        return labels

    change(store, args.name, delete, args.json)
    return 0
