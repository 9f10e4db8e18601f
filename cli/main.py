"""The parser and the dispatch of ``ktl``; every error leaves through ``main``:
a ``UserError`` exits 2, an ``OperationalError`` 1, each with its message on
stderr; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import os
import signal
import sys
from types import ModuleType

from cli.commands import (
    backbones,
    compare,
    delete,
    demo,
    doctor,
    evaluate,
    explain,
    export,
    inspect,
    jobs,
    label,
    list_models,
    lr_find,
    predict,
    quantize,
    review,
    rollback,
    score,
    serve,
    train,
    versions,
)
from cli.common import EXIT_USAGE, set_store_defaults
from cli.settings import CliSettings
from models import quiet
from models.errors import ConfigError

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a tool killed by SIGPIPE
# A module a command needs, and the extra of ktl that installs it.
EXTRA_OF = {
    "flask": "serve",
    "gunicorn": "serve",
    "prometheus_client": "serve",
    "matplotlib": "train",
    "sklearn": "train",  # ktl doctor
    "cleanlab": "train",
    "threadpoolctl": "train",
    "tf2onnx": "export",
    "onnx": "export",
    "onnxruntime": "serve",
    "tensorflow": "cpu",  # or gpu
}
# In the order `ktl --help` lists them.
COMMANDS: tuple[ModuleType, ...] = (
    backbones,
    compare,
    train,
    jobs,
    lr_find,
    evaluate,
    doctor,
    predict,
    score,
    review,
    list_models,
    versions,
    label,
    rollback,
    delete,
    serve,
    inspect,
    explain,
    export,
    quantize,
    demo,
)


def build_parser(settings: CliSettings | None = None) -> argparse.ArgumentParser:
    """The whole parser; ``settings``: the ``KTL_*`` variables (default: read now),
    which give the defaults and reach each command as ``args.settings``."""
    settings = settings if settings is not None else CliSettings.from_env()
    parser = argparse.ArgumentParser(
        prog="ktl",
        description="Fine-tune ImageNet backbones on your images, publish versioned models, "
        "serve them.",
        epilog="Exit codes: 0 success, 2 usage or input error, 1 anything else. "
        "Run `ktl COMMAND --help` for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"ktl {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub).set_defaults(run=command.run)
    parser.set_defaults(settings=settings)
    set_store_defaults(parser, settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        settings = CliSettings.from_env()  # once, at the start of the process
    except ConfigError as exc:
        print(f"ktl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    parser = build_parser(settings)
    words = sys.argv[1:] if argv is None else argv
    command = next((word for word in words if not word.startswith("-")), None)
    names = _command_names(parser)
    if command is not None and command not in names:
        close = difflib.get_close_matches(command, names, n=1)
        if close:  # argparse itself only lists every command
            parser.error(f"unknown command {command!r}; did you mean {close[0]!r}?")
    args = parser.parse_args(argv)
    quiet.install()  # before any command imports TensorFlow: its start-up lines stay off
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return args.run(args)
    except KeyboardInterrupt as exc:
        print(
            f"ktl: {exc}"
            if str(exc)
            else "ktl: interrupted; nothing was published. Run the same command with --resume "
            "to continue a training job from its last finished epoch.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left (`ktl backbones --json | head`): stop quietly, as Unix tools do,
        # and keep Python from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in EXTRA_OF:
            raise
        print(
            f"ktl: error: `ktl {args.command}` needs {missing}, which this installation lacks: "
            f"pip install 'ktl[{EXTRA_OF[missing]}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Exception as exc:
        from models.errors import KtlError

        if not isinstance(exc, KtlError):
            raise
        print(f"ktl: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _command_names(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def _version() -> str:
    try:
        return importlib.metadata.version("ktl")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "(not installed)"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
