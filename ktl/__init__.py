"""ktl's Python API under a name a user's own files do not shadow::

    from ktl import load_bundle

    bundle = load_bundle("demo")
    bundle.predict(["photo.jpg"])

The same as ``from models import load_bundle`` (``models/__init__.py`` documents
it). But Python looks in the script's folder (the working folder, for ``python -c``
and the REPL) before the installed packages, so a user's own ``models.py`` or
``models/`` there hides ktl's ``models``. ``import ktl`` finds ktl's ``models``
beside itself, whatever comes first on ``sys.path``, and loads it as ``models`` (the
name ktl's modules import each other by). A different ``models`` imported before
``ktl`` cannot be replaced: that is an ImportError saying so. Importing ``ktl``
imports no TensorFlow.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

_HOME = Path(__file__).resolve().parent.parent  # the folder that holds ktl's packages


def _ktl_models() -> None:
    """Make ``models`` ktl's own package (see the module's docstring)."""
    loaded = sys.modules.get("models")
    if loaded is not None:
        where = Path(getattr(loaded, "__file__", None) or ".").resolve()
        if where.parent.parent != _HOME:
            raise ImportError(
                f"a module named 'models' ({where}) was imported before ktl and hides ktl's "
                "own; rename it, or import ktl before it"
            )
        return
    spec = importlib.machinery.PathFinder.find_spec("models", [str(_HOME)])
    if spec is None or spec.loader is None:
        raise ImportError(f"ktl's models package is missing from {_HOME}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["models"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["models"]
        raise


_ktl_models()

from models import load_bundle  # noqa: E402

__all__ = ["load_bundle"]
