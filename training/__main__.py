"""``python -m training DATA --name NAME ...``: the fine-tune job, same flags as ``ktl train``.

A program, not a module: nothing imports it. It is cli's front end placed where
``python -m`` looks, so it may import cli; the import contracts in pyproject.toml
name this one import as their only exception."""

import sys

from cli import main

sys.exit(main(["train", *sys.argv[1:]]))
