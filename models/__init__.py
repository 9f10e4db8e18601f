"""ktl's models package, and its Python API::

    from models import load_bundle

    bundle = load_bundle("model_store/demo/1")      # a version folder, checksums verified
    bundle = load_bundle("demo")                     # or a name: its default version in
                                                     # $KTL_MODEL_STORE (./model_store)
    response = bundle.predict(["photo.jpg"])         # == `ktl predict photo.jpg --json`
    response.predictions[0].top[0].label

Importing this package registers ktl's custom Keras layers, so
``keras.models.load_model("model_store/demo/1/model.keras")`` works after
``import models``. TensorFlow is imported only when it is needed: the layers are
registered the moment Keras is imported (at once if it already is), so light
modules such as ``models.backbones`` stay quick to import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.bundle import Bundle

__all__ = ["load_bundle"]


def load_bundle(
    path_or_name: str | Path, *, version: int | None = None, store: str | Path | None = None
) -> Bundle:
    """A loaded, checksum-verified bundle: a version folder, or a model name of
    ``store`` (default ``$KTL_MODEL_STORE`` or ``./model_store``) at ``version``
    (default: the model's default version)."""
    import os

    from models import bundle
    from models.store import METADATA_FILE, ModelStore

    folder = Path(path_or_name)
    if version is None and store is None and (folder / METADATA_FILE).is_file():
        return bundle.load_bundle(folder)
    root = store if store is not None else os.environ.get("KTL_MODEL_STORE", "model_store")
    _, path = ModelStore(root).resolve(str(path_or_name), version)
    return bundle.load_bundle(path)


class _RegisterLayersAfterKeras(importlib.abc.MetaPathFinder):
    """Imports ``models.layers`` right after ``keras`` itself is imported."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            import models.layers  # noqa: F401

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "keras" in sys.modules:
    import models.layers  # noqa: F401
elif not any(isinstance(finder, _RegisterLayersAfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterLayersAfterKeras())
