"""One module per ``ktl`` command, each with ``register(subparsers)``, which adds
its parser and returns it, and ``run(args) -> exit code``.

Commands may import ``models``, ``training``, ``service`` and the rest of ``cli``; heavy
imports (TensorFlow) go inside ``run`` so ``ktl --help`` and flag errors answer at once.
"""
