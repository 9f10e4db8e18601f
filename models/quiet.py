"""TensorFlow's start-up log lines kept off the terminal, without hiding its errors.

Importing TensorFlow writes C++ log lines straight to the stderr file descriptor,
before Python can intervene: absl's "WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR", the CPU feature banner
("This TensorFlow binary is optimized to use available CPU instructions ...") and
oneDNN's "oneDNN custom operations are on ...". What filters them is read once, at
import: ``TF_CPP_MIN_LOG_LEVEL`` (2 by default here: warnings and information
off, errors on) set before TensorFlow is imported, and which lines get through
depends on the machine (oneDNN's line only on CPUs it optimises for).

:func:`install` sets that default and, for the first ``import tensorflow`` of the
process, captures the stderr descriptor while TensorFlow loads, then writes back
every captured line except these start-up notices: errors (``E``/``F`` lines,
Python warnings, tracebacks) still reach stderr. ``ktl`` calls it first thing
(``cli.main``), as do the Python API's ``load_bundle`` and the job runner's
training process. It changes nothing once TensorFlow is imported.

TensorFlow's Python logger (``WARNING:tensorflow:`` lines: retracing notices,
deprecations) follows the same level: at ``TF_CPP_MIN_LOG_LEVEL`` 2 or more it
keeps only errors (:func:`python_log_level`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Sequence
from types import ModuleType

# What the first import of TensorFlow may print that is no error of the user's.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]"  # absl's INFO and WARNING lines
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] \S+:\d+\]"  # TSL's own format
    r"|To enable the following instructions: "  # the CPU banner's second line
    r"|To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`"
    r")"
)
DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def install() -> None:
    """Quiet TensorFlow's start-up in this process (nothing once it is imported)."""
    if "tensorflow" in sys.modules:
        return
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


def python_log_level() -> int:
    """The level of TensorFlow's Python logger that ``TF_CPP_MIN_LOG_LEVEL`` implies
    (its C++ side's: 0 everything, 1 warnings, 2 and 3 errors only)."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip()
    return {"0": logging.NOTSET, "1": logging.WARNING}.get(level, logging.ERROR)


def kept(text: str) -> str:
    """``text`` written to stderr during TensorFlow's import, less its start-up notices."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.match(line))


class _QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``tensorflow`` (once) with the stderr descriptor captured and filtered;
    the module keeps its own spec and loader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spec: importlib.machinery.ModuleSpec | None = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow" or not self._lock.acquire(blocking=False):
            return None
        try:
            sys.meta_path.remove(self)
            with _filtered_stderr():
                self._spec = importlib.import_module("tensorflow").__spec__
            logging.getLogger("tensorflow").setLevel(python_log_level())
        finally:
            self._lock.release()
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return sys.modules[spec.name]

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import machinery set it to this finder's


class _filtered_stderr:
    """Point file descriptor 2 at a temporary file; on exit, restore it and write
    back what :func:`kept` keeps of what was written there."""

    def __enter__(self) -> None:
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        text = kept(self._file.read().decode(errors="replace"))
        self._file.close()
        if text:
            sys.stderr.write(text)
            sys.stderr.flush()
