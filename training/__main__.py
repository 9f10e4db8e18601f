"""``python -m training DATA --name NAME ...``: the fine-tune job, same flags as ``ktl train``."""

import sys

from cli import main

sys.exit(main(["train", *sys.argv[1:]]))
