"""``ktl review NAME``: the captured predictions of a model for a person to label,
abstained first, then the least confident, look-alikes as one item; ``--label``
records a label for an item and its look-alikes."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import add_json, print_json
from models.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "review",
        help="label what the service captured, most uncertain first",
        description="List the predictions of NAME that the service captured (KTL_CAPTURE_DIR), "
        "in the order to label them: those it abstained on first, then the least confident; "
        "near-duplicates are one item, shown once. With --label, record labels instead; a "
        "label given to an item is kept for its look-alikes too. `ktl train DATA --add-reviewed "
        "NAME` then trains on DATA and the reviewed images.",
    )
    parser.add_argument("name", metavar="NAME", help="model name")
    parser.add_argument(
        "--capture-dir",
        type=Path,
        help="the service's capture folder (default: $KTL_CAPTURE_DIR)",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="ID=LABEL",
        help="record LABEL for the capture ID (and its look-alikes); repeatable",
    )
    parser.add_argument("--limit", type=int, default=20, help="items listed (default: 20)")
    parser.add_argument("--all", action="store_true", help="also list the items already labelled")
    add_json(parser, "print one JSON object: the counts and the items")
    return parser


def run(args: argparse.Namespace) -> int:
    from models.capture.folder import CaptureFolder

    directory = args.capture_dir or args.settings.capture_dir
    if directory is None:
        raise ConfigError(
            "ktl review reads the service's capture folder: give --capture-dir DIR or set "
            "KTL_CAPTURE_DIR (the folder the service captures into)"
        )
    if not Path(directory).is_dir():
        raise ConfigError(f"--capture-dir {directory}: no such folder")
    folder = CaptureFolder(Path(directory))
    folder.model_dir(args.name)  # InvalidName for a name no model can have
    if args.label:
        return _label(folder, args)
    return _list(folder, args)


def _label(folder, args: argparse.Namespace) -> int:
    from models.capture.review import record_reviews

    pairs = []
    for given in args.label:
        identifier, sep, label = given.partition("=")
        if not sep or not identifier.strip() or not label.strip():
            raise ConfigError(f"--label {given!r}: write ID=LABEL, e.g. --label 0193...=bee")
        pairs.append((identifier.strip(), label.strip()))
    labelled = record_reviews(folder, args.name, pairs, by="cli")
    done = [
        {"id": identifier, "label": label, "labelled": ids}
        for (identifier, label), ids in zip(pairs, labelled, strict=True)
    ]
    if args.json:
        print_json({"model": args.name, "reviews": done})
        return 0
    for entry in done:
        others = len(entry["labelled"]) - 1
        also = f" and {others} look-alike{'s' if others != 1 else ''}" if others else ""
        print(f"Labelled {entry['id']}{also} as {entry['label']}")
    return 0


def _list(folder, args: argparse.Namespace) -> int:
    from models.capture.review import captured, queue, reviews

    items = queue(folder, args.name, include_done=args.all)
    total, given = len(captured(folder, args.name)), len(reviews(folder, args.name))
    left = sum(1 for item in items if not item.done)
    shown = items[: max(0, args.limit)]
    if args.json:
        counts = {"captured": total, "reviewed": given, "items_left": left}
        print_json({"model": args.name, **counts, "items": [i.to_json() for i in shown]})
        return 0
    if not items:
        print(
            f"Nothing to label for {args.name}: {total} captured, {given} reviewed "
            f"(in {folder.root})."
        )
        return 0
    print(
        f"{args.name}: {left} item{'s' if left != 1 else ''} to label ({total} captured, "
        f"{given} reviewed); abstained first, then the least confident"
    )
    print(f"{'id':<28} {'ver':>3}  {'predicted':<14} {'conf':>5}  {'':<9} {'alike':>5}  image")
    for item in shown:
        row = item.to_json()
        mark = "abstained" if row["abstained"] else ("labelled" if item.done else "")
        print(
            f"{row['id']:<28} {row['version']!s:>3}  {str(row['predicted'])[:14]:<14} "
            f"{row['confidence']:>5.3f}  {mark:<9} {len(row['near_duplicates']):>5}  "
            f"{row['image']}"
        )
    labels = ", ".join(shown[0].shown.labels) if shown else ""
    print(f"Label one: ktl review {args.name} --label ID=LABEL  (labels: {labels})")
    return 0
