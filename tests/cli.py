"""Run the real ``ktl`` command line in a subprocess, as the console script does."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.distributed import KTL as _ENTRY
from benchmarks.distributed import start_workers

__all__ = ["ktl", "start_workers"]


def ktl(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``ktl ARGS...``: its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-c", _ENTRY, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )
