"""``ktl train`` (also ``python -m training``): fine-tune and publish a version."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from cli.common import add_json, print_json
from cli.train_summary import print_summary
from models.option_checks import describe
from models.options import TrainOptions, extra


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "train",
        help="fine-tune a backbone and publish a new version",
        description="Fine-tune a backbone on DATA and publish the next version of NAME.",
    )
    add_train_options(parser)
    return parser


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ktl train`` and ``python -m training``, one per field of
    ``TrainOptions`` with its help and default; None means 'not given', so a
    ``--config`` file can set what a flag leaves alone."""
    parser.add_argument("data", nargs="?", help=option_help("data"))
    add_option_flags(parser, ["name"])
    parser.add_argument(
        "--config",
        metavar="JOB.toml",
        help="TOML file with the same keys as these flags; flags win",
    )
    groups: dict[str, list[str]] = {}
    for name in TrainOptions.model_fields:
        groups.setdefault(extra(name)["group"], []).append(name)
    for title, names in groups.items():
        if title:
            group = parser.add_argument_group(title)
            add_option_flags(group, names)
            if "add_reviewed" in names:
                add_capture_dir(group)
    add_option_flags(parser, ["store"])
    add_json(parser, "print one JSON object (name, version, path, metrics, dataset, seconds)")


def option_help(name: str) -> str:
    """The help of option ``name`` with its default, as argparse prints it."""
    field, meta = TrainOptions.model_fields[name], extra(name)
    default = meta["shown"] or field.default
    if field.annotation is bool:
        default = meta["shown"] or ("on" if field.default else "off")
    text = field.description if field.is_required() else f"{field.description} (default: {default})"
    return str(text).replace("%", "%%")


def add_option_flags(parser: argparse._ActionsContainer, names: list[str]) -> None:
    """The flags of the options ``names``, as TrainOptions defines them (default None)."""
    for name in names:
        field, meta = TrainOptions.model_fields[name], extra(name)
        flag = f"--{name.replace('_', '-')}"
        if field.annotation is bool:
            off = field.default is True
            parser.add_argument(
                f"--no-{name.replace('_', '-')}" if off else flag,
                dest=name,
                action="store_const",
                const=not off,
                help=("turn off: " if off else "") + option_help(name),
            )
            continue
        kinds, choices, _ = describe(field.annotation)
        convert: dict[str, Callable[[str], Any]] = {"int": int, "float": float}
        whole = len(kinds) == 1 and not choices  # "RATE|auto" stays text: build_config reads it
        parser.add_argument(
            flag,
            type=convert.get(kinds[0], str) if whole else str,
            choices=choices if choices and not kinds else None,
            metavar=meta["metavar"],
            help=option_help(name),
        )


def add_capture_dir(parser: argparse._ActionsContainer) -> None:
    """``--capture-dir``: where ``--add-reviewed`` reads the review (a setting of this
    machine, like ``--store``, so not an option a job file or HTTP may give)."""
    parser.add_argument(
        "--capture-dir",
        metavar="DIR",
        help="the capture folder --add-reviewed reads (default: $KTL_CAPTURE_DIR)",
    )


def train_config(args: argparse.Namespace, ignore: tuple[str, ...] = ()):
    """The job configuration from ``--config`` and flags (flags win); ``ignore``: flags
    of another command that are not the job's."""
    from training.config import build_config, read_toml

    file_settings = read_toml(args.config) if args.config else {}
    skipped = ("command", "config", "json", "run", "settings", *ignore)
    flags = {key: value for key, value in vars(args).items() if key not in skipped}
    if flags.get("store") is None and "store" not in file_settings:
        flags["store"] = str(args.settings.model_store)
    reviewing = flags.get("add_reviewed") or file_settings.get("add_reviewed")
    if reviewing and flags.get("capture_dir") is None and args.settings.capture_dir:
        flags["capture_dir"] = str(args.settings.capture_dir)
    return build_config(file_settings, flags)


def run(args: argparse.Namespace) -> int:
    config = train_config(args)  # settings are checked before TensorFlow is imported
    from training.job import run_job

    result = run_job(config).to_json()
    print_json(result) if args.json else print_summary(result)
    return 0
