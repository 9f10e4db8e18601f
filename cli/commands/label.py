"""``ktl label NAME LABEL VERSION`` (``--weight`` for the canary) and ``ktl label NAME
LABEL --remove``: point a label at a version, or take it off."""

from __future__ import annotations

import argparse

from cli.common import note
from cli.releases import add_common, add_force, change
from models.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "label",
        help="point a label (stable, canary, ...) at a version",
        description="Point LABEL at VERSION of NAME, or take it off with --remove. stable "
        "is the default version (without it, the highest version is); canary takes --weight "
        "of the default traffic (0 to 1) until it is removed. A move to a version with "
        "other class labels or another input size needs --force.",
    )
    add_common(parser)
    parser.add_argument("label", metavar="LABEL", help="stable, canary or any [a-z][a-z0-9_-]*")
    parser.add_argument("version", metavar="VERSION", type=int, nargs="?", help="a version")
    parser.add_argument("--remove", action="store_true", help="take LABEL off its version")
    parser.add_argument(
        "--weight",
        type=float,
        metavar="W",
        help="canary only: its share of the default traffic, 0 to 1 (default 0: reachable "
        "at /labels/canary only)",
    )
    add_force(parser, "move even to a version with other class labels or another input size")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.store import open_store
    from models.store.releases import remove_label, set_label

    if args.remove == (args.version is not None):
        raise ConfigError("give VERSION to point LABEL at it, or --remove to take LABEL off")
    if args.remove and (args.weight is not None or args.force):
        raise ConfigError("--remove takes no --weight or --force")
    store = open_store(args.store, args.settings.cache_dir)
    if args.remove:
        change(store, args.name, lambda: remove_label(store, args.name, args.label), args.json)
        return 0
    labels = change(
        store,
        args.name,
        lambda: set_label(
            store, args.name, args.label, args.version, weight=args.weight, force=args.force
        ),
        args.json,
    )
    if args.label == "canary" and not labels.canary_weight:
        note(
            f"The canary takes no default traffic: clients reach it at /v1/models/{args.name}"
            f"/labels/canary; `ktl label {args.name} canary {args.version} --weight 0.1` sends "
            "it a tenth of the default traffic"
        )
    return 0
