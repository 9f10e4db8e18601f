"""One module per ``ktl`` command, each with ``register(subparsers)``, which adds
its parser and returns it, and ``run(args) -> exit code``."""
