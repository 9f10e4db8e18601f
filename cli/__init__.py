"""The ``ktl`` command line: the one package that imports both ``training`` and
``service``. ``cli.main`` builds the parser and dispatches; each command lives in
``cli.commands``. Heavy imports (TensorFlow) happen inside the commands, so
``ktl --help`` and flag errors answer at once."""

from cli.main import main

__all__ = ["main"]
