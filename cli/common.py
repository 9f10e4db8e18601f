"""What several commands share: the store option, JSON output, model lookup."""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
from typing import TYPE_CHECKING, Any

from models.errors import ConfigError
from models.store.location import UnsupportedStore, check_location

if TYPE_CHECKING:
    from cli.settings import CliSettings
    from models.bundle import Bundle
    from models.store import ModelStore

EXIT_USAGE = 2  # a usage or input error (models.errors.UserError.exit_code)
# What a model without a version means: its default version (store.resolve).
DEFAULT_VERSION = "the default version: the one labelled stable, else the latest"
MODEL_HELP = f"a model, NAME alone meaning {DEFAULT_VERSION}"


# The default of --store until the parser knows the settings (set_store_defaults).
STORE_FROM_SETTINGS = "$KTL_MODEL_STORE"


def add_store(parser: argparse.ArgumentParser, default: str | None = STORE_FROM_SETTINGS) -> None:
    parser.add_argument(
        "--store",
        default=default,
        type=store_argument,
        help="model store folder (default: $KTL_MODEL_STORE or ./model_store)",
    )


def store_argument(text: str) -> str:
    """``--store``'s text, refused (exit 2, with the reason) when it is a URL that ktl
    cannot serve; never taken as a folder name."""
    if text == STORE_FROM_SETTINGS:
        return text
    try:
        check_location(text)
    except UnsupportedStore as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


def set_store_defaults(parser: argparse.ArgumentParser, settings: CliSettings) -> None:
    """Each command's ``--store`` defaults to the settings' store (KTL_MODEL_STORE)."""
    store = str(settings.model_store)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                set_store_defaults(command, settings)
        elif action.dest == "store" and action.default == STORE_FROM_SETTINGS:
            action.default = store


def add_json(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_model(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--name`` and ``--version`` of a published model."""
    parser.add_argument("--name", required=required, help="model name")
    parser.add_argument("--version", type=int, help=f"version (default: {DEFAULT_VERSION})")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def load_reference(reference: str, store: ModelStore) -> Bundle:
    """The bundle of ``NAME`` (its default version) or ``NAME:VERSION`` in ``store``,
    loaded and verified."""
    from models.bundle import load_bundle
    from models.store import validate_name

    name, _, version = reference.partition(":")
    if version and (not version.isdigit() or int(version) < 1):
        raise ConfigError(f"{reference!r}: write NAME or NAME:VERSION, a version being 1, 2, ...")
    found, _ = store.resolve(validate_name(name), int(version) if version else None)
    return load_bundle(store.local_copy(name, found))


def load_model(args: argparse.Namespace) -> Bundle:
    """The bundle of ``--name`` at ``--version`` in ``--store``, loaded and verified."""
    from models.bundle import load_bundle
    from models.store import open_store, validate_name

    store = open_store(args.store, args.settings.cache_dir)
    version, _ = store.resolve(validate_name(args.name), args.version)
    return load_bundle(store.local_copy(args.name, version))


def note(message: str) -> None:
    """A line for the person at the terminal (stderr: stdout is for results)."""
    print(message, file=sys.stderr, flush=True)


def check_port_free(host: str, port: int) -> None:
    """Raise a ``ConfigError`` naming ``port`` when something already listens on it, as
    binding it would fail (the same ``SO_REUSEADDR`` gunicorn uses, so a port left in
    TIME_WAIT by a server that stopped counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigError(f"Cannot use port {port} on {host}: {exc.strerror}") from exc
            raise ConfigError(
                f"Port {port} on {host} is already in use (another `make run` or `ktl serve`?). "
                f"Stop it, or choose another port: make run PORT={port + 1}, "
                f"or ktl serve --port {port + 1}"
            ) from exc
